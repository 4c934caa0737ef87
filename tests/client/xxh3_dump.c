/* SPDX-License-Identifier: ISC */
/*
 * xxh3-dump: XXH3-64 and XXH3-128 (libxxhash) of the bytes (i * 131 + 7) mod
 * 256, i = 0..len-1, for every len 0..1100 and a few seeds, one line each:
 * "SEED LEN H64 LOW64 HIGH64" (hex). tests/client/test_python_bucket.py
 * checks the Python module's pure XXH3 against it, so every code path of
 * both hashes (short, mid-size, long with blocks) is compared with the C
 * library the ring uses.
 */
#include <inttypes.h>
#include <stdio.h>
#include <xxhash.h>

int
main(void)
{
    static const uint64_t seeds[] = {0,         1, 22, 0x5348454441434354ull, 0x534845444b455953ull,
                                     UINT64_MAX};
    unsigned char b[1100];

    for (size_t i = 0; i < sizeof(b); i++)
        b[i] = (unsigned char)(i * 131 + 7);
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        for (size_t n = 0; n <= sizeof(b); n++) {
            XXH128_hash_t h = XXH3_128bits_withSeed(b, n, seeds[s]);

            printf("%016" PRIx64 " %zu %016" PRIx64 " %016" PRIx64 " %016" PRIx64 "\n", seeds[s], n,
                   (uint64_t)XXH3_64bits_withSeed(b, n, seeds[s]), (uint64_t)h.low64,
                   (uint64_t)h.high64);
        }
    }
    return 0;
}
