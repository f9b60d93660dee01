/*
** Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as
** easy as 1, 2, 3", SC 2011), inline so random kernels can generate numbers
** inside their own loops. Not installed.
**
** A block is the Philox bijection of a 128-bit counter under a 64-bit key.
** dropnet's counter layout: (block low 32, block high 32, stream low 32,
** stream high 32); key = (seed low 32, seed high 32).
*/
#ifndef DN_PHILOX_H
#define DN_PHILOX_H

#include <stdint.h>

#define DN_PHILOX_M0 0xD2511F53u   /* round multipliers */
#define DN_PHILOX_M1 0xCD9E8D57u
#define DN_PHILOX_W0 0x9E3779B9u   /* Weyl key increments (golden ratio, sqrt(3)-1) */
#define DN_PHILOX_W1 0xBB67AE85u

/* One round: two 32x32->64 products, the S-box of Philox. */
static inline void dn_philox_round(uint32_t c[4], uint32_t k0, uint32_t k1) {
  uint64_t p0 = (uint64_t)DN_PHILOX_M0 * c[0];
  uint64_t p1 = (uint64_t)DN_PHILOX_M1 * c[2];
  uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
  uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
  c[0] = hi1 ^ c[1] ^ k0;
  c[1] = lo1;
  c[2] = hi0 ^ c[3] ^ k1;
  c[3] = lo0;
}

/* Philox4x32-10 of counter c under key (k0, k1), in place. The key is
   bumped by the Weyl constants between rounds (9 bumps for 10 rounds). */
static inline void dn_philox4x32_10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    if (r) {
      k0 += DN_PHILOX_W0;
      k1 += DN_PHILOX_W1;
    }
    dn_philox_round(c, k0, k1);
  }
}

/* The 4 words of block `block` of stream `stream` under key `seed`. */
static inline void dn_philox_block(uint32_t out[4], uint64_t seed, uint64_t block, uint64_t stream) {
  out[0] = (uint32_t)block;
  out[1] = (uint32_t)(block >> 32);
  out[2] = (uint32_t)stream;
  out[3] = (uint32_t)(stream >> 32);
  dn_philox4x32_10(out, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/*
** DN_PHILOX_LANES consecutive blocks first_block, first_block+1, ... of one
** stream at once, as structure-of-arrays: out[w][l] is word w of block
** first_block + l. Written lane-wise so the compiler turns each round into
** vector multiplies (AVX2/AVX-512 vpmuludq); the values are exactly those of
** dn_philox_block. first_block + l wraps modulo 2^64 like the counter does.
*/
#define DN_PHILOX_LANES 16

static inline void dn_philox_blocks(uint32_t out[4][DN_PHILOX_LANES], uint64_t seed, uint64_t first_block,
                                    uint64_t stream) {
  uint32_t c0[DN_PHILOX_LANES], c1[DN_PHILOX_LANES], c2[DN_PHILOX_LANES], c3[DN_PHILOX_LANES];
  for (int l = 0; l < DN_PHILOX_LANES; l++) {
    uint64_t block = first_block + (uint64_t)l;
    c0[l] = (uint32_t)block;
    c1[l] = (uint32_t)(block >> 32);
    c2[l] = (uint32_t)stream;
    c3[l] = (uint32_t)(stream >> 32);
  }
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    if (r) {
      k0 += DN_PHILOX_W0;
      k1 += DN_PHILOX_W1;
    }
    for (int l = 0; l < DN_PHILOX_LANES; l++) {
      uint64_t p0 = (uint64_t)DN_PHILOX_M0 * c0[l];
      uint64_t p1 = (uint64_t)DN_PHILOX_M1 * c2[l];
      uint32_t next0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
      uint32_t next2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = (uint32_t)p1;
      c3[l] = (uint32_t)p0;
      c0[l] = next0;
      c2[l] = next2;
    }
  }
  for (int l = 0; l < DN_PHILOX_LANES; l++) {
    out[0][l] = c0[l];
    out[1][l] = c1[l];
    out[2][l] = c2[l];
    out[3][l] = c3[l];
  }
}

#endif
