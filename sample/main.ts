import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { AppModule } from './app.module';
import { startTracing } from './tracing';

async function bootstrap() {
  // TRACING=console prints every idempotency span (request and store operations) to stdout.
  if (process.env.TRACING === 'console') startTracing();
  const app = await NestFactory.create(AppModule);
  app.enableShutdownHooks();
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder().setTitle('Payments (nestjs-idempotent sample)').setVersion('1.0').build(),
  );
  SwaggerModule.setup('docs', app, document);
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port, '127.0.0.1');
  Logger.log(`payments sample on http://127.0.0.1:${port} (Swagger UI at /docs)`, 'Sample');
}

void bootstrap();
