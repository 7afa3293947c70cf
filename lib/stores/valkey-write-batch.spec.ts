import * as net from 'node:net';
import { WriteBatch, writeBatchOf } from './valkey-write-batch';

describe('WriteBatch', () => {
  let server: net.Server;
  let socket: net.Socket;
  const chunks: Buffer[] = [];
  beforeAll(async () => {
    server = net.createServer((peer) => peer.on('data', (chunk) => chunks.push(chunk)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
  });
  afterAll(async () => {
    socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const received = async (bytes: number): Promise<Buffer[]> => {
    for (let i = 0; i < 100 && Buffer.concat(chunks).length < bytes; i++) await new Promise((r) => setTimeout(r, 5));
    return chunks.splice(0);
  };

  it('holds the writes of one turn of the event loop and lets them go together, then runs its callbacks once', async () => {
    const connection = { status: 'ready', stream: socket };
    const batch = new WriteBatch(() => [connection]);
    const written: string[] = [];
    const onWritten = () => written.push(`written ${socket.writableLength}`);
    batch.hold(onWritten);
    socket.write('one,');
    batch.hold(onWritten);
    socket.write('two,');
    batch.hold();
    socket.write(Buffer.from('three'));
    expect(socket.writableCorked).toBe(1);
    expect(written).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(socket.writableCorked).toBe(0);
    expect(written).toEqual(['written 0']); // once, after the sockets took the bytes
    expect((await received(13)).map(String)).toEqual(['one,two,three']);
  });

  it('leaves a connection that is not ready alone', async () => {
    const batch = new WriteBatch(() => [{ status: 'connecting', stream: socket }, { status: 'ready' }]);
    batch.hold();
    expect(socket.writableCorked).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
  });

  it('is shared by every store of one client; a cluster batches its primaries', () => {
    const client = { isCluster: false, status: 'ready', stream: socket };
    expect(writeBatchOf(client)).toBe(writeBatchOf(client));
    const primaries = [{ status: 'ready', stream: { cork: jest.fn(), uncork: jest.fn() } }];
    const cluster = { isCluster: true, nodes: jest.fn(() => primaries) };
    writeBatchOf(cluster).hold();
    expect(cluster.nodes).toHaveBeenCalledWith('master');
    expect(primaries[0].stream.cork).toHaveBeenCalledTimes(1);
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        expect(primaries[0].stream.uncork).toHaveBeenCalledTimes(1);
        resolve();
      }),
    );
  });
});
