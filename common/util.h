/**
 * @file util.h
 * @brief Small shared helpers: the xmalloc family, clocks, string helpers.
 *
 * Ownership: every x* allocator returns memory the caller frees with free().
 * They never return NULL: on out-of-memory they log one line and abort(),
 * which keeps call sites free of impossible-to-test error paths (redis's
 * zmalloc does the same).
 */
#ifndef MLOPS_UTIL_H
#define MLOPS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Mark a function whose result must be checked (0/-1 or bool returns). */
#define MLOPS_WUR __attribute__((warn_unused_result))
/** printf-style format checking. */
#define MLOPS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

#define MLOPS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/** Allocate a formatted string (caller frees). */
char *xasprintf(const char *fmt, ...) MLOPS_PRINTF(1, 2);
char *xvasprintf(const char *fmt, va_list ap) MLOPS_PRINTF(1, 0);

/** Monotonic clock in microseconds (for durations and deadlines). */
int64_t mono_us(void);
/** Monotonic clock in milliseconds. */
int64_t mono_ms(void);
/** Wall clock in microseconds since the Unix epoch (for timestamps). */
int64_t wall_us(void);
/** Wall clock in milliseconds since the Unix epoch. */
int64_t wall_ms(void);

/**
 * Format a wall-clock time (µs since epoch) as RFC 3339 UTC with
 * milliseconds, e.g. "2026-11-25T10:55:01.123Z". Writes at most @p size
 * bytes (25 are enough) and returns @p buf.
 */
char *fmt_rfc3339(int64_t us, char *buf, size_t size);

/**
 * Format a finite double so that strtod() gives back the same value, fast
 * (no printf) for the common cases: whole numbers below 2^53 in magnitude
 * as integers ("42", "-7"); decimals with the fewest digits after the point
 * that read back exactly ("12.34", "0.0425"; magnitudes 1e-4 to 1e15);
 * anything else as "%.17g". Writes into @p buf (32 bytes are enough) and
 * returns the length. NaN and infinities give
 * "nan"/"inf" text as printf does: check finiteness first where it matters.
 */
size_t fmt_double_rt(double v, char buf[32]);

/** Copy @p src into @p dst of @p size bytes, always NUL-terminating. */
void str_copy(char *dst, const char *src, size_t size);

/** True if @p s starts with @p prefix. */
bool str_starts_with(const char *s, const char *prefix);

/**
 * Parse a whole string as a signed 64-bit integer (base 10). Leading and
 * trailing white space are not accepted. Returns 0 on success, -1 if the
 * string is empty, has trailing characters or overflows.
 */
int parse_int64(const char *s, int64_t *out) MLOPS_WUR;

/** Parse a whole string as a finite double. Returns 0 or -1. */
int parse_double(const char *s, double *out) MLOPS_WUR;

/**
 * Parse a boolean: true/false, yes/no, on/off, 1/0 (case-insensitive).
 * Returns 0 or -1.
 */
int parse_bool(const char *s, bool *out) MLOPS_WUR;

/**
 * Read a whole file into a NUL-terminated heap buffer (caller frees).
 * Refuses files larger than @p max_bytes. On error returns NULL and writes
 * a message naming the path into @p errstr.
 */
char *file_read_all(const char *path, size_t max_bytes, size_t *lenp, char *errstr,
                    size_t errstr_size);

/** Lower-case hex SHA-256 of a buffer into @p hex (65 bytes). */
void sha256_hex(const void *data, size_t len, char hex[65]);

/**
 * A growable byte buffer, always NUL-terminated. Storage is the caller's
 * (strbuf_init/strbuf_cleanup); data is owned by the strbuf until
 * strbuf_detach(), after which the caller frees it.
 */
typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
} strbuf_t;

void strbuf_init(strbuf_t *sb);
void strbuf_cleanup(strbuf_t *sb);
/** Empty the buffer, keeping its storage for reuse (hot paths). */
void strbuf_reset(strbuf_t *sb);
void strbuf_reserve(strbuf_t *sb, size_t extra);
void strbuf_append(strbuf_t *sb, const void *data, size_t len);
void strbuf_puts(strbuf_t *sb, const char *s);
void strbuf_putc(strbuf_t *sb, char c);
void strbuf_appendf(strbuf_t *sb, const char *fmt, ...) MLOPS_PRINTF(2, 3);
/** Append @p s as a JSON string literal (quotes included, UTF-8 checked). */
void strbuf_json_str(strbuf_t *sb, const char *s, size_t len);
/**
 * Take the data (caller frees). The strbuf is left empty with no storage:
 * appending to it works again, strbuf_cleanup() is still allowed.
 */
char *strbuf_detach(strbuf_t *sb, size_t *lenp);

#endif
