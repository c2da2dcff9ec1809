#include "rng.h"

#include <math.h>

void ad_rng_seed(ad_rng *rng, uint64_t seed, uint64_t stream)
{
    if (!rng) return;
    rng->state = 0;
    rng->inc = (stream << 1u) | 1u;
    (void)ad_rng_u32(rng);
    rng->state += seed;
    (void)ad_rng_u32(rng);
}

uint32_t ad_rng_u32(ad_rng *rng)
{
    uint64_t old = rng->state;
    rng->state = old * 6364136223846793005ULL + rng->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

double ad_rng_uniform(ad_rng *rng)
{
    uint64_t hi = ad_rng_u32(rng) >> 5; /* 27 bits */
    uint64_t lo = ad_rng_u32(rng) >> 6; /* 26 bits */
    return (double)((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}

double ad_rng_normal(ad_rng *rng)
{
    /* 1 - u lies in (0, 1], so the logarithm is finite. */
    double u1 = 1.0 - ad_rng_uniform(rng);
    double u2 = ad_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

uint32_t ad_rng_below(ad_rng *rng, uint32_t n)
{
    if (n == 0) return 0;
    /* Reject the low values that would make the modulo uneven. */
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t r = ad_rng_u32(rng);
        if (r >= threshold) return r % n;
    }
}
