import { MemoryStore } from '../../lib';
import { storeContract } from '../../lib/testing';

storeContract(() => new MemoryStore(), { describe, it, name: 'MemoryStore' });
