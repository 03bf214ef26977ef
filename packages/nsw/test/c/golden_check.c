/*
 * Checks the C side of the shim protocol against the golden bytes the
 * TypeScript codec is tested with (test/golden). Encodings of shim -> agent
 * messages must match byte for byte; agent -> shim messages must decode to
 * the expected fields. Usage: golden_check <golden dir>. Exit 0 when all pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftcp_nsw_proto.h"

static int failures;

/* Golden frames are small but for the long I/O examples (about 10 kB). */
#define GOLDEN_CAP 65536

static size_t load(const char *dir, const char *name, unsigned char *buf, size_t cap) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    printf("FAIL %s: cannot open\n", name);
    failures++;
    return 0;
  }
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

static void expect_bytes(const char *dir, const char *name, const unsigned char *got, size_t got_len) {
  static unsigned char want[GOLDEN_CAP];
  size_t want_len = load(dir, name, want, sizeof want);
  if (got_len == 0 || got_len != want_len || memcmp(got, want, got_len) != 0) {
    printf("FAIL %s: C encoding differs from golden bytes (%zu vs %zu bytes)\n", name, got_len, want_len);
    failures++;
  } else {
    printf("ok %s encodes identically\n", name);
  }
}

static void check(int cond, const char *name, const char *what) {
  if (!cond) {
    printf("FAIL %s: %s\n", name, what);
    failures++;
  }
}

/* The bytes of the long I/O examples, as test/protocol.test.ts makes them. */
static void long_bytes(unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)((i * 7 + (i >> 8)) & 0xff);
}

static const unsigned char clock_payload[16] = {0x00, 0xf1, 0x53, 0x65, 0, 0, 0, 0, 0x15, 0xcd, 0x5b, 0x07, 0, 0, 0, 0};

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  const char *dir = argv[1];
  static unsigned char buf[GOLDEN_CAP], pat[GOLDEN_CAP];
  size_t n;
  long len;
  long_bytes(pat, sizeof pat);

  n = ftcp_nsw_encode_hello(buf, sizeof buf, 4242, 1, FTCP_NSW_MODE_RECORD, "p/f1/t2", 7);
  expect_bytes(dir, "hello.bin", buf, n);

  struct ftcp_nsw_call c = {7, FTCP_NSW_KIND_CLOCK_GETTIME, 0, 0, 0, 1, sizeof clock_payload, clock_payload};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_CALL, &c);
  expect_bytes(dir, "call-clock.bin", buf, n);

  static const unsigned char rnd[4] = {0xde, 0xad, 0xbe, 0xef};
  struct ftcp_nsw_call r = {8, FTCP_NSW_KIND_GETRANDOM, 0, 0, 4, 4, 4, rnd};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_CALL, &r);
  expect_bytes(dir, "call-random.bin", buf, n);

  struct ftcp_nsw_call e = {9, FTCP_NSW_KIND_GETRANDOM, 0, 11, -1, 4096, 0, NULL};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_CALL, &e);
  expect_bytes(dir, "call-error.bin", buf, n);

  n = ftcp_nsw_encode_seq(buf, sizeof buf, FTCP_NSW_MSG_WAIT, 9);
  expect_bytes(dir, "wait.bin", buf, n);

  struct ftcp_nsw_call p = {10, FTCP_NSW_KIND_PTHREAD_CREATE, FTCP_NSW_CALL_F_COMPARE, 0, 0, 0, 0, NULL};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_PLAY, &p);
  expect_bytes(dir, "play.bin", buf, n);

  /* Agent -> shim: decode and check fields. */
  n = load(dir, "stable.bin", buf, sizeof buf);
  check(n == 16 && ftcp_nsw_check_header(buf) == 8 && buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_STABLE, "stable.bin", "header");
  check(ftcp_get_u64(buf + FTCP_NSW_HDR_SIZE) == 9, "stable.bin", "call number");

  n = load(dir, "result.bin", buf, sizeof buf);
  len = ftcp_nsw_check_header(buf);
  struct ftcp_nsw_call got = {0, 0, 0, 0, 0, 0, 0, NULL};
  check(len >= 0 && (size_t)len + FTCP_NSW_HDR_SIZE == n && buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_RESULT, "result.bin", "header");
  check(ftcp_nsw_decode_call(FTCP_NSW_MSG_RESULT, buf + FTCP_NSW_HDR_SIZE, (size_t)len, &got) == 0, "result.bin", "decodes");
  check(got.call_no == 7 && got.kind == FTCP_NSW_KIND_CLOCK_GETTIME && got.result == 0 && got.err == 0 && got.arg == 1 &&
            got.payload_len == 16 && memcmp(got.payload, clock_payload, 16) == 0,
        "result.bin", "fields");

  n = load(dir, "error.bin", buf, sizeof buf);
  len = ftcp_nsw_check_header(buf);
  check(len >= 4 && buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_ERROR, "error.bin", "header");
  uint16_t code_len = ftcp_get_u16(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_ERROR_OFF_CODE_LEN);
  check(code_len == 19 && memcmp(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_ERROR_OFF_TEXT, "FTCP_ERR_DIVERGENCE", 19) == 0, "error.bin",
        "code");

  /* Promotion: ADOPT and ADOPTED are the shim's, so they must encode identically. */
  n = ftcp_nsw_encode_adopt(buf, sizeof buf, 9, 0x0123456789abcdefULL);
  expect_bytes(dir, "adopt.bin", buf, n);

  struct ftcp_nsw_adopted ok = {9, 9, 0x0123456789abcdefULL, 0, FTCP_NSW_ADOPT_STEP_NONE, NULL};
  n = ftcp_nsw_encode_adopted(buf, sizeof buf, &ok);
  expect_bytes(dir, "adopted-ok.bin", buf, n);

  struct ftcp_nsw_adopted failed = {9, -1, 0x0123456789abcdefULL, 99, FTCP_REPAIR_BIND, "bind"};
  n = ftcp_nsw_encode_adopted(buf, sizeof buf, &failed);
  expect_bytes(dir, "adopted-failed.bin", buf, n);

  /* REBUILD is the agent's: the shim's decoder must find every field where the TypeScript encoder put it. */
  n = load(dir, "rebuild.bin", buf, sizeof buf);
  len = ftcp_nsw_check_header_cap(buf, FTCP_NSW_MAX_REBUILD_BODY);
  check(len >= 0 && (size_t)len + FTCP_NSW_HDR_SIZE == n && buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_REBUILD, "rebuild.bin", "header");
  struct ftcp_nsw_rebuild rb;
  check(ftcp_nsw_decode_rebuild(buf + FTCP_NSW_HDR_SIZE, (size_t)len, &rb) == 0, "rebuild.bin", "decodes");
  unsigned char lip[4], pip[4];
  memcpy(lip, &rb.state.local_ip, 4);
  memcpy(pip, &rb.state.peer_ip, 4);
  check(lip[0] == 10 && lip[1] == 0 && lip[2] == 0 && lip[3] == 1, "rebuild.bin", "local address in network order");
  check(pip[0] == 192 && pip[1] == 168 && pip[2] == 1 && pip[3] == 20, "rebuild.bin", "peer address in network order");
  check(rb.state.local_port == 6379 && rb.state.peer_port == 51234, "rebuild.bin", "ports");
  check(rb.state.snd_una == 0xfffffff0u && rb.state.rcv_nxt == 123456789u, "rebuild.bin", "sequence numbers");
  check(rb.state.mss == 1448 && rb.state.snd_wscale == 7 && rb.state.rcv_wscale == 9, "rebuild.bin", "mss and window scales");
  check(rb.state.sack_ok == 1 && rb.state.timestamps == 1 && rb.state.ts_val == 0x80000001u, "rebuild.bin", "options and TSval");
  check(rb.state.peer_window == 8388480u && rb.state.our_window == 262144u, "rebuild.bin", "windows");
  check(rb.inq_len == 8 && memcmp(rb.inq, "GET /b\r\n", 8) == 0, "rebuild.bin", "inq");
  check(rb.outq_len == 17 && memcmp(rb.outq, "HTTP/1.1 200 OK\r\n", 17) == 0, "rebuild.bin", "outq");
  /* Lengths that disagree with the body, or a REBUILD-sized body under the ordinary limit, are refused. */
  check(ftcp_nsw_decode_rebuild(buf + FTCP_NSW_HDR_SIZE, (size_t)len - 1, &rb) == -1, "rebuild.bin", "short body accepted");
  unsigned char big[8] = {FTCP_NSW_PROTO_VERSION, FTCP_NSW_MSG_REBUILD, 0, 0, 0, 0, 0x10, 0};
  check(ftcp_nsw_check_header(big) == -1 && ftcp_nsw_check_header_cap(big, FTCP_NSW_MAX_REBUILD_BODY) == 0x100000, "big REBUILD",
        "header limits");

  /* A long replicated write: the shim sends the DONE head, then the bytes from wherever they are. */
  struct ftcp_nsw_call dn = {12, FTCP_NSW_KIND_SEND, 0, 0, 9000, 9000, 9000, NULL};
  n = ftcp_nsw_encode_call_head(buf, sizeof buf, FTCP_NSW_MSG_DONE, &dn);
  check(n == FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_FIXED, "done-send-long.bin", "head length");
  memcpy(buf + n, pat, 9000);
  expect_bytes(dir, "done-send-long.bin", buf, n + 9000);
  /* The same DONE for a kind that moves no bytes would be over the limit. */
  struct ftcp_nsw_call dl = {12, FTCP_NSW_KIND_GETRANDOM, 0, 0, 9000, 9000, 9000, NULL};
  check(ftcp_nsw_encode_call_head(buf, sizeof buf, FTCP_NSW_MSG_DONE, &dl) == 0, "done of getrandom", "9000 bytes accepted");

  /* A long replicated read: the RESULT's fixed part, then the client's bytes. */
  n = load(dir, "result-recv-long.bin", buf, sizeof buf);
  len = ftcp_nsw_check_header(buf);
  struct ftcp_nsw_call lr = {0, 0, 0, 0, 0, 0, 0, NULL};
  check(len >= 0 && (size_t)len + FTCP_NSW_HDR_SIZE == n, "result-recv-long.bin", "header");
  check(ftcp_nsw_decode_call(FTCP_NSW_MSG_RESULT, buf + FTCP_NSW_HDR_SIZE, (size_t)len, &lr) == 0, "result-recv-long.bin", "decodes");
  check(lr.call_no == 11 && lr.kind == FTCP_NSW_KIND_RECV && lr.result == 10000 && lr.arg == 65536 && lr.payload_len == 10000 &&
            memcmp(lr.payload, pat, 10000) == 0,
        "result-recv-long.bin", "fields");
  /* The same body as the RESULT of another kind, or as a PLAY, is over the limit. */
  ftcp_put_u16(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_OFF_KIND, FTCP_NSW_KIND_GETRANDOM);
  check(ftcp_nsw_decode_call(FTCP_NSW_MSG_RESULT, buf + FTCP_NSW_HDR_SIZE, (size_t)len, &lr) == -1, "result-recv-long.bin", "as getrandom");
  ftcp_put_u16(buf + FTCP_NSW_HDR_SIZE + FTCP_NSW_CALL_OFF_KIND, FTCP_NSW_KIND_RECV);
  check(ftcp_nsw_decode_call(FTCP_NSW_MSG_PLAY, buf + FTCP_NSW_HDR_SIZE, (size_t)len, &lr) == -1, "result-recv-long.bin", "as PLAY");
  unsigned char io[8] = {FTCP_NSW_PROTO_VERSION, FTCP_NSW_MSG_RESULT, 0, 0, 0, 0, 0, 0};
  ftcp_put_u32(io + FTCP_NSW_HDR_OFF_LEN, FTCP_NSW_MAX_IO_BODY);
  check(ftcp_nsw_check_header(io) == (long)FTCP_NSW_MAX_IO_BODY, "I/O header", "MAX_IO_BODY refused");
  ftcp_put_u32(io + FTCP_NSW_HDR_OFF_LEN, FTCP_NSW_MAX_IO_BODY + 1);
  check(ftcp_nsw_check_header(io) == -1, "I/O header", "past MAX_IO_BODY accepted");
  io[FTCP_NSW_HDR_OFF_TYPE] = FTCP_NSW_MSG_PLAY;
  ftcp_put_u32(io + FTCP_NSW_HDR_OFF_LEN, FTCP_NSW_MAX_FRAME);
  check(ftcp_nsw_check_header(io) == -1, "PLAY header", "past MAX_FRAME accepted");

  /* A lock record with its positions, and the DONE of a contended attempt. */
  unsigned char pos[FTCP_NSW_LOCK_SIZE];
  ftcp_put_u64(pos + FTCP_NSW_LOCK_OFF_DOMAIN, 0x0123456789abcdefULL);
  ftcp_put_u64(pos + FTCP_NSW_LOCK_OFF_TRY, 3);
  ftcp_put_u64(pos + FTCP_NSW_LOCK_OFF_GRANT, 7);
  struct ftcp_nsw_call lk = {13, FTCP_NSW_KIND_LOCK, 0, 0, 0, 0x10002, sizeof pos, pos};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_CALL, &lk);
  expect_bytes(dir, "call-lock.bin", buf, n);
  struct ftcp_nsw_call tr = {13, FTCP_NSW_KIND_LOCK, FTCP_NSW_CALL_F_TRY, 11, -1, 0x10002, 0, NULL};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_DONE, &tr);
  expect_bytes(dir, "done-lock-try.bin", buf, n);

  /* posix_spawn's record: the child's pid as an i32. */
  unsigned char pid[4];
  ftcp_put_u32(pid, 12345);
  struct ftcp_nsw_call sp = {14, FTCP_NSW_KIND_SPAWN, 0, 0, 0, 0, sizeof pid, pid};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_CALL, &sp);
  expect_bytes(dir, "call-spawn.bin", buf, n);

  /* Playback from a queue: the shim's FETCH and PLAYED encode identically; RECORDS decodes record by record. */
  struct ftcp_nsw_call fe = {15, FTCP_NSW_KIND_CLOCK_GETTIME, FTCP_NSW_CALL_F_TENTATIVE | FTCP_NSW_CALL_F_FETCH, 0, 0, 1, 0, NULL};
  n = ftcp_nsw_encode_call(buf, sizeof buf, FTCP_NSW_MSG_PLAY, &fe);
  expect_bytes(dir, "play-fetch.bin", buf, n);
  n = ftcp_nsw_encode_played(buf, sizeof buf, 16, 17);
  expect_bytes(dir, "played.bin", buf, n);
  n = load(dir, "records.bin", buf, sizeof buf);
  len = ftcp_nsw_check_header(buf);
  check(len >= FTCP_NSW_RECORDS_FIXED && (size_t)len + FTCP_NSW_HDR_SIZE == n && buf[FTCP_NSW_HDR_OFF_TYPE] == FTCP_NSW_MSG_RECORDS, "records.bin", "header");
  const unsigned char *rb_ = buf + FTCP_NSW_HDR_SIZE;
  check(ftcp_get_u64(rb_ + FTCP_NSW_RECORDS_OFF_FIRST) == 15 && ftcp_get_u32(rb_ + FTCP_NSW_RECORDS_OFF_COUNT) == 3 &&
            ftcp_get_u32(rb_ + FTCP_NSW_RECORDS_OFF_RESERVED) == 0,
        "records.bin", "first and count");
  size_t at = FTCP_NSW_RECORDS_FIXED, k;
  struct ftcp_nsw_call q = {0, 0, 0, 0, 0, 0, 0, NULL};
  k = ftcp_nsw_decode_record(rb_ + at, (size_t)len - at, &q);
  check(k == FTCP_NSW_REC_FIXED + 16 && q.kind == FTCP_NSW_KIND_CLOCK_GETTIME && q.flags == 0 && q.arg == 1 && !memcmp(q.payload, clock_payload, 16),
        "records.bin", "the clock read");
  at += k;
  k = ftcp_nsw_decode_record(rb_ + at, (size_t)len - at, &q);
  check(k == FTCP_NSW_REC_FIXED + FTCP_NSW_LOCK_SIZE && q.kind == FTCP_NSW_KIND_LOCK && q.flags == FTCP_NSW_CALL_F_SYNC && q.arg == 0x10002 &&
            ftcp_get_u64(q.payload + FTCP_NSW_LOCK_OFF_GRANT) == 7,
        "records.bin", "the lock, SYNC");
  at += k;
  k = ftcp_nsw_decode_record(rb_ + at, (size_t)len - at, &q);
  check(k == FTCP_NSW_REC_FIXED + 11 && q.kind == FTCP_NSW_KIND_RECV && q.result == 3 && q.arg == 16384 &&
            ftcp_get_u64(q.payload) == 0xefcdab8967452301ULL && !memcmp(q.payload + FTCP_NSW_CONN_KEY_SIZE, "abc", 3),
        "records.bin", "the read with its key and bytes");
  check(at + k == (size_t)len, "records.bin", "nothing after the records");
  /* A record cut short, or with a flag other than SYNC, is refused. */
  check(ftcp_nsw_decode_record(rb_ + at, k - 1, &q) == 0, "records.bin", "a cut record accepted");
  buf[FTCP_NSW_HDR_SIZE + at + FTCP_NSW_REC_OFF_FLAGS] = FTCP_NSW_CALL_F_LIVE;
  check(ftcp_nsw_decode_record(rb_ + at, (size_t)len - at, &q) == 0, "records.bin", "a LIVE record accepted");

  /* A header with another version or non-zero flags is refused. */
  unsigned char bad[8] = {1, FTCP_NSW_MSG_STABLE, 0, 0, 8, 0, 0, 0};
  check(ftcp_nsw_check_header(bad) == -1, "bad header", "version 1 accepted");
  bad[0] = FTCP_NSW_PROTO_VERSION;
  bad[2] = 1;
  check(ftcp_nsw_check_header(bad) == -1, "bad header", "flags accepted");

  printf(failures ? "golden: %d failures\n" : "golden: all ok\n", failures);
  return failures ? 1 : 0;
}
