import { expect } from 'chai';
import { ErrorCode, StableBufferClient, StableBufferServer, checkEndpoint, endpointProblem, isFtcpError } from '../src/index.js';

describe('ZeroMQ endpoints given by people', () => {
  it('accepts tcp with an address, a name, an IPv6 address or a wildcard, and ipc and inproc', () => {
    for (const e of ['tcp://10.0.0.2:7400', 'tcp://buffer.lan:7400', 'tcp://[::1]:7400', 'ipc:///run/ftcp.sock', 'inproc://buf']) {
      expect(endpointProblem(e, 'connect'), e).to.equal(undefined);
    }
    for (const e of ['tcp://*:7400', 'tcp://127.0.0.1:0', 'tcp://0.0.0.0:*']) expect(endpointProblem(e, 'bind'), e).to.equal(undefined);
  });

  it('says what to write for an address without a scheme, without a port or with a port out of range', () => {
    expect(endpointProblem('10.0.0.2:7400', 'connect')).to.match(/not a ZeroMQ endpoint: give tcp:\/\/IP:PORT, like tcp:\/\/10\.0\.0\.2:7400/);
    expect(endpointProblem('tcp://10.0.0.2', 'connect')).to.match(/not a ZeroMQ endpoint/);
    expect(endpointProblem('http://10.0.0.2:7400', 'bind')).to.match(/not a ZeroMQ endpoint/);
    expect(endpointProblem('tcp://10.0.0.2:70000', 'bind')).to.match(/port 70000 is out of range/);
  });

  it('refuses a wildcard or zero port to connect to, which only a bind can use', () => {
    expect(endpointProblem('tcp://10.0.0.2:0', 'connect')).to.match(/needs the buffer's real port/);
    expect(endpointProblem('tcp://10.0.0.2:*', 'connect')).to.match(/needs the buffer's real port/);
  });

  it('is checked by the client before ZeroMQ sees it, as an error with a code', () => {
    let caught: unknown;
    try {
      StableBufferClient.connect({ endpoint: '10.0.0.2:7400', node: 'n' });
    } catch (err) {
      caught = err;
    }
    expect(isFtcpError(caught, ErrorCode.BAD_CONFIG), String(caught)).to.equal(true);
    expect(() => checkEndpoint('tcp://10.0.0.2:7400', 'connect')).not.to.throw();
  });

  it('is checked by the server before it binds', async () => {
    let caught: unknown;
    try {
      await StableBufferServer.start({ listen: '127.0.0.1:7400', dataDir: '/nonexistent-never-created' });
    } catch (err) {
      caught = err;
    }
    expect(String(caught)).to.match(/not a ZeroMQ endpoint/);
  });
});
