/*
 * static_code.c: the reference verifier written in C against ca_plugin.h, proving the ABI is
 * language-neutral. Demo only: the "SMS code" is fixed in config.
 *
 *   config   {"code":"123456","max_attempts":3}      (max_attempts optional, 1..9, default 3)
 *   start        -> awaiting_user + challenge sms_code, state {"attempts":0}
 *   user_input   -> succeeded (code right) | awaiting_user + otp_wrong | failed otp_attempts_exceeded
 *   cancel       -> failed cancelled
 *   other events -> CA_UNSUPPORTED; garbage -> CA_INVALID_ARGUMENT; bad state -> CA_STATE
 *
 * Build: cc -std=c11 -shared -fPIC -fvisibility=hidden -I../abi/include static_code.c -o libstatic_code.so
 * Only ca_plugin_init_v1 is exported. The JSON handling is deliberately minimal (the host sends
 * compact serde_json output); a real C plugin would use a JSON library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca_plugin.h"

#define EXPORT __attribute__((visibility("default")))

typedef struct instance {
    char code[16];
    int max_attempts;
} instance;

static int32_t put(const ca_sink *s, const char *text) {
    if (s == NULL || s->write == NULL) return CA_INVALID_ARGUMENT;
    return s->write(s->ctx, (const uint8_t *)text, strlen(text)) == CA_OK ? CA_OK : CA_SINK;
}

/* Copies [p, p+len) into a NUL-terminated heap string (NULL on failure). */
static char *dup_n(const uint8_t *p, size_t len) {
    char *s = malloc(len + 1);
    if (s == NULL) return NULL;
    if (len) memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* Finds "key": in s and returns a pointer just after the colon, or NULL. */
static const char *field(const char *s, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat);
    return p ? p + strlen(pat) : NULL;
}

/* Copies a JSON string value without escapes at p (pointing at the opening quote) into out. */
static int string_value(const char *p, char *out, size_t cap) {
    if (p == NULL || *p != '"') return -1;
    p++;
    size_t n = 0;
    while (*p && *p != '"') {
        if (*p == '\\' || n + 1 >= cap) return -1;
        out[n++] = *p++;
    }
    if (*p != '"') return -1;
    out[n] = '\0';
    return 0;
}

static int32_t describe(const ca_sink *out) {
    return put(out,
               "{\"v\":1,\"name\":\"static-code\",\"version\":\"0.1.0\",\"kind\":\"verifier\","
               "\"methods\":[\"static_code\"],"
               "\"config_schema\":{\"type\":\"object\",\"required\":[\"code\"],"
               "\"properties\":{\"code\":{\"type\":\"string\",\"pattern\":\"^[0-9]{6}$\"},"
               "\"max_attempts\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9}},"
               "\"additionalProperties\":false},"
               "\"egress_hosts\":[],\"applicant_fields\":[\"phone\"]}");
}

static int32_t configure(const uint8_t *cfg, size_t len, void **inst, const ca_sink *err) {
    if (inst == NULL || (cfg == NULL && len)) return CA_INVALID_ARGUMENT;
    char *s = dup_n(cfg, len);
    if (s == NULL) return CA_NOMEM;
    instance tmp = {{0}, 3};
    int ok = s[0] == '{' && string_value(field(s, "code"), tmp.code, sizeof tmp.code) == 0 &&
             strlen(tmp.code) == 6 && strspn(tmp.code, "0123456789") == 6;
    const char *m = field(s, "max_attempts");
    if (ok && m != NULL) {
        ok = *m >= '1' && *m <= '9' && (m[1] == '}' || m[1] == ',');
        tmp.max_attempts = *m - '0';
    }
    free(s);
    if (!ok) {
        put(err, "config needs {\"code\": six digits, \"max_attempts\": 1..9}");
        return CA_CONFIG;
    }
    instance *i = malloc(sizeof *i);
    if (i == NULL) return CA_NOMEM;
    *i = tmp;
    *inst = i;
    return CA_OK;
}

/* Writes a StepOutput; result_outcome NULL for no result. */
static int32_t reply(const ca_sink *out, const char *status, int attempts, const char *actions,
                     const char *outcome) {
    char buf[1024];
    char result[256] = "null";
    if (outcome != NULL) {
        if (strcmp(outcome, "verified") == 0)
            snprintf(result, sizeof result,
                     "{\"outcome\":\"verified\",\"verified_attributes\":[\"phone\"],"
                     "\"assurance\":\"L1\",\"evidence\":{\"method\":\"static_code\"}}");
        else
            snprintf(result, sizeof result, "{\"outcome\":\"%s\",\"evidence\":{}}", outcome);
    }
    int n = snprintf(buf, sizeof buf,
                     "{\"v\":1,\"status\":\"%s\",\"state\":{\"attempts\":%d},\"actions\":[%s],"
                     "\"result\":%s}",
                     status, attempts, actions ? actions : "", result);
    if (n < 0 || (size_t)n >= sizeof buf) return CA_INTERNAL;
    return put(out, buf);
}

static int32_t step_str(const instance *self, const char *in, const ca_sink *out) {
    const char *v = field(in, "v");
    const char *ev = field(in, "event");
    const char *now = field(in, "now");
    const char *st = field(in, "state");
    if (in[0] != '{' || v == NULL || strncmp(v, "1,", 2) != 0 || ev == NULL || now == NULL ||
        st == NULL) {
        put(out, "not a StepInput v1 document");
        return CA_INVALID_ARGUMENT;
    }
    char type[32], now_s[64];
    if (string_value(field(ev, "type"), type, sizeof type) != 0 ||
        string_value(now, now_s, sizeof now_s) != 0) {
        put(out, "event type or now missing");
        return CA_INVALID_ARGUMENT;
    }
    int attempts = -1;
    if (strncmp(st, "{\"attempts\":", 12) == 0 && st[12] >= '0' && st[12] <= '9' && st[13] == '}')
        attempts = st[12] - '0';
    else if (strncmp(st, "null", 4) != 0) {
        put(out, "state is not ours");
        return CA_STATE;
    }

    if (strcmp(type, "start") == 0) {
        if (attempts != -1) {
            put(out, "start with a state");
            return CA_STATE;
        }
        char action[256];
        snprintf(action, sizeof action,
                 "{\"type\":\"challenge\",\"kind\":\"sms_code\",\"payload\":{\"digits\":6},"
                 "\"expires_at\":\"%s\"}",
                 now_s);
        return reply(out, "awaiting_user", 0, action, NULL);
    }
    if (strcmp(type, "cancel") == 0)
        return reply(out, "failed", attempts < 0 ? 0 : attempts, NULL, "cancelled");
    if (strcmp(type, "user_input") == 0) {
        if (attempts < 0) {
            put(out, "user_input before start");
            return CA_STATE;
        }
        char data[64];
        if (string_value(field(ev, "data"), data, sizeof data) != 0) {
            put(out, "user_input without data");
            return CA_INVALID_ARGUMENT;
        }
        if (strcmp(data, self->code) == 0) return reply(out, "succeeded", attempts, NULL, "verified");
        attempts++;
        if (attempts < self->max_attempts)
            return reply(out, "awaiting_user", attempts, NULL, "otp_wrong");
        return reply(out, "failed", attempts, NULL, "otp_attempts_exceeded");
    }
    put(out, "event not supported");
    return CA_UNSUPPORTED;
}

static int32_t step(void *inst, const uint8_t *input, size_t len, const ca_sink *out) {
    if (inst == NULL || (input == NULL && len)) return CA_INVALID_ARGUMENT;
    if (len > 4u * 1024u * 1024u) return CA_INVALID_ARGUMENT;
    char *s = dup_n(input, len);
    if (s == NULL) return CA_NOMEM;
    int32_t rc = step_str((const instance *)inst, s, out);
    free(s);
    return rc;
}

static void destroy(void *inst) { free(inst); }

static const ca_plugin_api API = {
    CA_PLUGIN_ABI_MAJOR, CA_PLUGIN_ABI_MINOR, sizeof(ca_plugin_api), 0,
    describe,            configure,           step,                   destroy,
};

EXPORT int32_t ca_plugin_init_v1(const ca_host_api *host, const ca_plugin_api **out) {
    if (host == NULL || out == NULL) return CA_INVALID_ARGUMENT;
    if (host->abi_major != CA_PLUGIN_ABI_MAJOR || host->struct_size < 16) return CA_ABI_MISMATCH;
    *out = &API;
    return CA_OK;
}
