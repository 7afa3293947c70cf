// A small seeded pseudo-random generator, so a run can be repeated from its seed. Each part of the
// harness takes its own stream (`fork(label)`), so adding a draw in one place (say, the fleet) does
// not shift the choices made elsewhere (the nemesis schedule).
'use strict';

/** 32-bit FNV-1a of a string: mixes a label into a seed. */
function hash32(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

class Random {
  /** @param {number} seed an unsigned 32-bit integer */
  constructor(seed) {
    this.seed = seed >>> 0;
    this.state = this.seed || 0x9e3779b9;
  }

  /** A float in [0, 1) (mulberry32). */
  next() {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min, max) {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** true with probability `p`. */
  chance(p) {
    return this.next() < p;
  }

  /** One element of a non-empty array. */
  pick(items) {
    return items[Math.floor(this.next() * items.length)];
  }

  /** An independent stream for one part of the harness, derived from this seed and `label`. */
  fork(label) {
    return new Random((this.seed ^ hash32(label)) >>> 0);
  }
}

/** A random seed for a run that was given none. */
function freshSeed() {
  return require('node:crypto').randomBytes(4).readUInt32BE(0);
}

module.exports = { Random, freshSeed };
