/**
 * Run in a fresh Node process by test/e2e/optional-peers.e2e-spec.ts, whose require hook records
 * in `globalThis.optionalRequires` every `require` of an optional peer and who made it: loads the
 * library, serves one idempotent HTTP request (and its replay), and prints what was loaded.
 */
import 'reflect-metadata';
import { Controller, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { IdempotencyModule, Idempotent, MemoryStore } from '../../lib';

const OPTIONAL =
  /[\\/]node_modules[\\/](@nestjs[\\/](microservices|graphql|apollo|mercurius)|graphql|mercurius|@apollo[\\/]server)[\\/]/;
const requires = (globalThis as { optionalRequires?: { id: string; from: string }[] }).optionalRequires ?? [];

@Controller()
class PingController {
  runs = 0;

  @Post('ping')
  @Idempotent()
  ping() {
    return { runs: ++this.runs };
  }
}

@Module({ imports: [IdempotencyModule.forRoot(new MemoryStore())], controllers: [PingController] })
class AppModule {}

async function main(): Promise<void> {
  const afterImport = Object.keys(require.cache).filter((file) => OPTIONAL.test(file));
  const app = await NestFactory.create(AppModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const bodies: unknown[] = [];
  for (let i = 0; i < 2; i++) {
    const response = await fetch(`${url}/ping`, { method: 'POST', headers: { 'Idempotency-Key': 'k-1' } });
    bodies.push(await response.json());
  }
  await app.close();
  const afterRequests = Object.keys(require.cache).filter((file) => OPTIONAL.test(file));
  process.stdout.write(JSON.stringify({ afterImport, afterRequests, bodies, requires }));
}

main().catch((error) => {
  process.stderr.write(String(error?.stack ?? error));
  process.exit(1);
});
