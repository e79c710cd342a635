/*
 * ca_plugin.h: the CA appliance plugin ABI, version 1.1. THIS FILE IS THE CONTRACT.
 *
 * A plugin is a shared library exporting exactly one symbol, ca_plugin_init_v1, which hands the
 * host a static table of function pointers. Everything else crosses as JSON bytes (UTF-8, every
 * document carries "v": 1) described in the appliance's plugin documentation.
 *
 * Rules:
 *  - Versioning: a minor version only appends fields to the end of a table; struct_size tells the
 *    reader how much of a table exists. A NULL function pointer means "unsupported". A new major
 *    version exports a new entry symbol (ca_plugin_init_v2) so one host can serve both.
 *  - Ownership: inputs (pointer, length) are borrowed for the duration of the call only. Outputs
 *    are written through a ca_sink: the host copies the bytes before write() returns, and may be
 *    called several times (the pieces are concatenated). Nothing is freed across the boundary; an
 *    instance made by configure() is freed only by the same plugin's destroy().
 *  - Sink caps: a write that would exceed the host's cap returns CA_SINK; the plugin must then
 *    return CA_SINK. Host caps: reply 1 MiB, opaque state 64 KiB (inside the reply).
 *  - Threads: the host never calls step() concurrently on one instance.
 *  - Errors: on a non-OK status the out/err sink may hold a short UTF-8 diagnostic. It must never
 *    contain personal data (names, ID numbers, phones, cards) or secrets.
 *  - Plugins do no I/O, read no clock and use no randomness of their own: step() is a pure
 *    function of (config, state, event, now). HTTP, challenges and timers are returned as actions.
 *
 * Two kinds of plugin share this table (the manifest's "kind" says which):
 *  - "verifier" (1.0): step() takes a StepInput {v, verification_id, now, state, event} and
 *    returns a StepOutput {v, status, state, actions, result}.
 *  - "channel" (1.1): step() takes a ChannelInput and returns a ChannelOutput. A channel plugin is
 *    stateless: one delivery request in, the HTTP actions that deliver it out.
 *      ChannelInput  {"v":1, "delivery_id":"ntf_...", "now":"<RFC 3339>", "request": R}
 *        R = {"type":"application_event", "event":{channel, application_id, application_kind,
 *               event, status, reference?, certificate_serial?, failure_code?, phone?, email?,
 *               at}}       (event: created | needs_applicant | choice_offered | awaiting_review |
 *                           issued | rejected | expired | cancelled; ignore unknown fields/names)
 *          | {"type":"sms", "to":"<phone>", "text":"..."}
 *          | {"type":"email", "to":"<address>", "subject":"...", "text":"..."}
 *      ChannelOutput {"v":1, "actions":[{"type":"http", "id", "method", "url", "headers"?,
 *                     "body"?, "timeout_ms"?, "sign"?: {"secret":"<secret name>"}}]}  (<= 16)
 *    The manifest's "methods" list what it handles: "events", "sms", "email". phone / email reach
 *    it in events only if it lists "sms" / "email". The host commits each request to a durable
 *    outbox before calling step(), performs the actions through the plugin's egress allowlist
 *    (secrets injected as for verifiers), adds x-ca-timestamp and x-ca-signature = hex
 *    HMAC-SHA256(secret, timestamp "." body) to actions with "sign", and retries each action
 *    that got no 2xx (5xx, 408, 429, timeout, connection) with exponential backoff until it
 *    succeeds or runs out of attempts; other 4xx fail the delivery. Actions are at-least-once:
 *    receivers de-duplicate by delivery_id. No actions = nothing to deliver.
 */
#ifndef CA_PLUGIN_H
#define CA_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CA_PLUGIN_ABI_MAJOR 1
#define CA_PLUGIN_ABI_MINOR 1

/* Status codes: never renumbered, only appended. */
#define CA_OK 0               /* success */
#define CA_INVALID_ARGUMENT 1 /* malformed input document, NULL pointer, unknown event */
#define CA_CONFIG 2           /* configuration rejected */
#define CA_ABI_MISMATCH 3     /* host and plugin disagree on the ABI major version or layout */
#define CA_UNSUPPORTED 4      /* the operation or event is not supported by this plugin */
#define CA_STATE 5            /* the opaque state blob is corrupt */
#define CA_INTERNAL 6         /* a bug in the plugin */
#define CA_PANIC 7            /* the plugin panicked/threw; the instance is poisoned forever */
#define CA_SINK 8             /* the sink refused the output (too big) */
#define CA_NOMEM 9            /* out of memory */

/* Log levels for ca_host_api.log. */
#define CA_LOG_ERROR 1
#define CA_LOG_WARN 2
#define CA_LOG_INFO 3
#define CA_LOG_DEBUG 4

/* Host-provided output channel. The host copies [data, data+len) before returning. */
typedef int32_t (*ca_sink_write_fn)(void *sink_ctx, const uint8_t *data, size_t len);
typedef struct ca_sink {
    void *ctx;
    ca_sink_write_fn write;
} ca_sink;

/* Host log callback: message is UTF-8, copied by the host. No personal data, no secrets. */
typedef void (*ca_log_fn)(void *log_ctx, int32_t level, const uint8_t *msg, size_t len);

/* What the host offers the plugin. Valid for the life of the process. */
typedef struct ca_host_api {
    uint32_t abi_major;   /* CA_PLUGIN_ABI_MAJOR of the host */
    uint32_t abi_minor;   /* CA_PLUGIN_ABI_MINOR of the host */
    uint32_t struct_size; /* sizeof(ca_host_api) as the host knows it */
    uint32_t reserved;    /* 0 */
    void *log_ctx;
    ca_log_fn log;        /* may be NULL */
} ca_host_api;

/* What the plugin offers the host: a static table, valid for the life of the process. */
typedef struct ca_plugin_api {
    uint32_t abi_major;   /* must equal the host's major */
    uint32_t abi_minor;   /* fields up to this minor are present */
    uint32_t struct_size; /* sizeof(ca_plugin_api) as the plugin knows it */
    uint32_t reserved;    /* 0 */
    /* Write the manifest JSON to out. */
    int32_t (*describe)(const ca_sink *out);
    /* Validate the config JSON and create an instance. On error write a diagnostic to err. */
    int32_t (*configure)(const uint8_t *cfg, size_t len, void **instance, const ca_sink *err);
    /* StepInput JSON -> StepOutput JSON written to out. */
    int32_t (*step)(void *instance, const uint8_t *input, size_t len, const ca_sink *out);
    /* Free an instance made by configure. */
    void (*destroy)(void *instance);
} ca_plugin_api;

/* The one exported symbol. Checks host->abi_major, stores *out. */
int32_t ca_plugin_init_v1(const ca_host_api *host, const ca_plugin_api **out);
typedef int32_t (*ca_plugin_init_v1_fn)(const ca_host_api *host, const ca_plugin_api **out);

/* Layout pinned: mirrored by const assertions in plugins/abi/src/ffi.rs. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#if UINTPTR_MAX == 0xFFFFFFFFFFFFFFFFu
_Static_assert(sizeof(ca_sink) == 16, "ca_sink layout");
_Static_assert(offsetof(ca_sink, write) == 8, "ca_sink layout");
_Static_assert(sizeof(ca_host_api) == 32, "ca_host_api layout");
_Static_assert(offsetof(ca_host_api, log_ctx) == 16, "ca_host_api layout");
_Static_assert(offsetof(ca_host_api, log) == 24, "ca_host_api layout");
_Static_assert(sizeof(ca_plugin_api) == 48, "ca_plugin_api layout");
_Static_assert(offsetof(ca_plugin_api, describe) == 16, "ca_plugin_api layout");
_Static_assert(offsetof(ca_plugin_api, configure) == 24, "ca_plugin_api layout");
_Static_assert(offsetof(ca_plugin_api, step) == 32, "ca_plugin_api layout");
_Static_assert(offsetof(ca_plugin_api, destroy) == 40, "ca_plugin_api layout");
#endif
#endif

#ifdef __cplusplus
}
#endif

#endif /* CA_PLUGIN_H */
