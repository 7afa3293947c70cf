import { Injectable } from '@nestjs/common';

/** A refund request as a queue delivers it. `id` is the message id: the same on every delivery. */
export interface RefundRequested {
  id: string;
  paymentId: string;
  amount: number;
}

type Handler = (message: RefundRequested) => Promise<void>;

/**
 * Stands in for a message broker with at-least-once delivery (SQS, RabbitMQ, Kafka, ...): every
 * message may arrive more than once, even concurrently, and a delivery whose handler throws is
 * delivered again. The consumer must make its side effect idempotent.
 */
@Injectable()
export class RefundQueue {
  #handler: Handler | undefined;
  /** Deliveries so far (the duplicates included). */
  deliveries = 0;

  subscribe(handler: Handler): void {
    this.#handler = handler;
  }

  /** Publishes a message; the broker delivers it `copies` times at once (a duplicate delivery). */
  publish(message: RefundRequested, copies = 2): Promise<void> {
    return Promise.all(Array.from({ length: copies }, () => this.#deliver(message, 3))).then(() => undefined);
  }

  async #deliver(message: RefundRequested, attemptsLeft: number): Promise<void> {
    this.deliveries++;
    try {
      await this.#handler?.(message);
    } catch {
      if (attemptsLeft > 1) await this.#deliver(message, attemptsLeft - 1);
    }
  }
}
