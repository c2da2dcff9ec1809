/**
 * @file
 * rng.h - an explicit, seedable random number generator (PCG32).
 *
 * unroll has no global random state: everything random (initialisation,
 * dropout, random tensors, gradcheck projections) takes an ad_rng. The
 * generator is PCG-XSH-RR 64/32 (M. E. O'Neill, "PCG: A Family of Simple
 * Fast Space-Efficient Statistically Good Algorithms for Random Number
 * Generation", 2014); its whole state is two 64-bit words, so it can be saved
 * in a checkpoint and resumed exactly.
 *
 *     ad_rng rng;
 *     ad_rng_seed(&rng, 42, 0);
 *     double u = ad_rng_uniform(&rng);   // in [0, 1)
 *     double z = ad_rng_normal(&rng);    // standard normal
 */
#ifndef UNROLL_AD_RNG_H
#define UNROLL_AD_RNG_H

#include <stdint.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

/** PCG32 state; a plain value that may be copied, saved and restored. */
typedef struct ad_rng {
    uint64_t state; /**< current state */
    uint64_t inc;   /**< stream selector, always odd */
} ad_rng;

/** Seeds `rng` with `seed` on stream `stream`; equal (seed, stream) give equal sequences. */
AD_API void ad_rng_seed(ad_rng *rng, uint64_t seed, uint64_t stream);

/** The next 32 uniformly distributed bits. */
AD_API uint32_t ad_rng_u32(ad_rng *rng);

/** A uniform double in [0, 1) with 53 random bits (two draws). */
AD_API double ad_rng_uniform(ad_rng *rng);

/** A standard normal deviate by the Box-Muller transform (four draws, nothing cached). */
AD_API double ad_rng_normal(ad_rng *rng);

/** A uniform integer in [0, n) without modulo bias; returns 0 when n is 0. */
AD_API uint32_t ad_rng_below(ad_rng *rng, uint32_t n);

#ifdef __cplusplus
}
#endif
#endif
