/*
 * Shared by the fuzz targets (tests/fuzz/fuzz_<name>.c). Each target defines
 * LLVMFuzzerTestOneInput() and, when it needs set-up (a spec file, logs
 * off), LLVMFuzzerInitialize(). The same file links two ways:
 *   - with clang's libFuzzer (-fsanitize=fuzzer) in the MLOPS_FUZZ build
 *     (`make fuzz`), which generates inputs;
 *   - with replay.c's main() in the ordinary build, which feeds it the files
 *     of tests/fuzz/regress/<name>/ and tests/fuzz/corpus/<name>/ (CTest label
 *     unit), so every crasher found once stays a regression test.
 * A target treats every input as hostile: it may refuse it, never crash on
 * it. Properties that must hold for every input are checked with
 * FUZZ_CHECK(), which aborts, so libFuzzer and the replay driver both report
 * the input as a crash.
 */
#ifndef MLOPS_FUZZ_H
#define MLOPS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
