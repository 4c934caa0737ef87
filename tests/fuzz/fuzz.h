/* SPDX-License-Identifier: ISC */
/*
 * tests/fuzz: shared bits of the libFuzzer harnesses for proto/. Each
 * harness feeds its parser arbitrary bytes (nothing may crash, leak or trip
 * a sanitizer) and checks a round-trip property wherever an encoder exists:
 * what decodes, encodes and decodes again to the same value. A failed
 * property aborts, which libFuzzer reports as a crash with the input saved.
 * Built with -Dfuzz=true (clang only); tests/fuzz/run runs them bounded.
 */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A property that must hold for every input; not assert(), which release
 * builds compile out. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* TESTS_FUZZ_FUZZ_H */
