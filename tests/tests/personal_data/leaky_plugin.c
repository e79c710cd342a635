/*
 * leaky_plugin.c: a careless third-party verifier for the personal-data tests. On `start` it
 * copies the applicant's numbers into everything a plugin can emit: a host log line, a line on
 * stderr, a line on stdout, and its error message (it then fails the call with
 * CA_INVALID_ARGUMENT). The appliance must scrub every one before it reaches its log or a reply.
 *
 * Build: cc -std=c11 -shared -fPIC -fvisibility=hidden -I plugins/abi/include leaky_plugin.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_plugin.h"

#define EXPORT __attribute__((visibility("default")))

static const ca_host_api *HOST;

static int32_t put(const ca_sink *s, const char *text) {
    if (s == NULL || s->write == NULL) return CA_INVALID_ARGUMENT;
    return s->write(s->ctx, (const uint8_t *)text, strlen(text)) == CA_OK ? CA_OK : CA_SINK;
}

/* Copies the JSON string value of "key" in s into out ("" if absent). */
static void value_of(const char *s, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(s, pat);
    out[0] = '\0';
    if (p == NULL) return;
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < cap) out[n++] = *p++;
    out[n] = '\0';
}

static int32_t describe(const ca_sink *out) {
    return put(out,
               "{\"v\":1,\"name\":\"leaky\",\"version\":\"0.1.0\",\"kind\":\"verifier\","
               "\"methods\":[\"leaky\"],\"config_schema\":{\"type\":\"object\"},"
               "\"egress_hosts\":[],"
               "\"applicant_fields\":[\"name\",\"id_number\",\"phone\",\"bank_card\"]}");
}

static int32_t configure(const uint8_t *cfg, size_t len, void **inst, const ca_sink *err) {
    (void)cfg;
    (void)len;
    (void)err;
    if (inst == NULL) return CA_INVALID_ARGUMENT;
    *inst = malloc(1);
    return *inst ? CA_OK : CA_NOMEM;
}

static int32_t step(void *inst, const uint8_t *input, size_t len, const ca_sink *out) {
    if (inst == NULL || input == NULL || len > 65536) return CA_INVALID_ARGUMENT;
    char *s = malloc(len + 1);
    if (s == NULL) return CA_NOMEM;
    memcpy(s, input, len);
    s[len] = '\0';
    char id[64], phone[64], card[64], line[512];
    value_of(s, "id_number", id, sizeof id);
    value_of(s, "phone", phone, sizeof phone);
    value_of(s, "bank_card", card, sizeof card);
    free(s);
    snprintf(line, sizeof line, "LEAK applicant id=%s phone=%s card=%s", id, phone, card);
    if (HOST != NULL && HOST->log != NULL)
        HOST->log(HOST->log_ctx, CA_LOG_WARN, (const uint8_t *)line, strlen(line));
    fprintf(stderr, "%s (stderr)\n", line);
    printf("%s (stdout)\n", line);
    fflush(stdout);
    fflush(stderr);
    put(out, line);
    return CA_INVALID_ARGUMENT;
}

static void destroy(void *inst) { free(inst); }

static const ca_plugin_api API = {
    CA_PLUGIN_ABI_MAJOR, CA_PLUGIN_ABI_MINOR, sizeof(ca_plugin_api), 0,
    describe,            configure,           step,                   destroy,
};

EXPORT int32_t ca_plugin_init_v1(const ca_host_api *host, const ca_plugin_api **out) {
    if (host == NULL || out == NULL) return CA_INVALID_ARGUMENT;
    if (host->abi_major != CA_PLUGIN_ABI_MAJOR || host->struct_size < 16) return CA_ABI_MISMATCH;
    HOST = host;
    *out = &API;
    return CA_OK;
}
