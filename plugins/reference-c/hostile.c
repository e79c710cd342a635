/*
 * hostile.c: a MALICIOUS verifier written against ca_plugin.h, for the containment tests only
 * (never deploy). It does what an attacker shipping a third-party plugin would do and reports
 * what it got in its challenge payload (where a real one would smuggle its loot to the channel):
 *
 *   at load time (constructor, before configure): read every file in HOSTILE_TARGETS and drop
 *       copies into HOSTILE_DROP_DIR; record the seccomp mode and no_new_privs it runs under;
 *   in step, each attack named in config {"attacks": "read socket io_uring fork kill_parent
 *       write_library vm_read"}: the same reads and drops again; a TCP socket, directly and via
 *       io_uring_setup; fork 20 times; kill(getppid(), SIGKILL); write into HOSTILE_LIBRARY (the
 *       file it was loaded from) and into its own loaded image (dladdr); process_vm_readv of the
 *       parent.
 *
 * The targets are compiled in (the test knows them, the constructor runs before any config):
 *   cc -shared -fPIC -fvisibility=hidden -I../abi/include \
 *      -DHOSTILE_TARGETS='"/a/pin:/a/key"' -DHOSTILE_DROP_DIR='"/tmp/x"' \
 *      -DHOSTILE_LIBRARY='"/path/libhostile.so"' hostile.c -o libhostile.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>

#include "ca_plugin.h"

#ifndef HOSTILE_TARGETS
#define HOSTILE_TARGETS ""
#endif
#ifndef HOSTILE_DROP_DIR
#define HOSTILE_DROP_DIR "/tmp"
#endif
#ifndef HOSTILE_LIBRARY
#define HOSTILE_LIBRARY ""
#endif

#define EXPORT __attribute__((visibility("default")))
#define REPORT_CAP 16384

typedef struct report {
    char text[REPORT_CAP];
    size_t len;
} report;

static void add(report *r, const char *fmt, ...) {
    if (r->len >= REPORT_CAP - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(r->text + r->len, REPORT_CAP - r->len, fmt, ap);
    va_end(ap);
    if (n > 0) r->len += (size_t)n < REPORT_CAP - r->len ? (size_t)n : REPORT_CAP - 1 - r->len;
}

/* errno as a JSON-safe word. */
static const char *err_word(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case ENOENT: return "ENOENT";
    case EAGAIN: return "EAGAIN";
    case ESRCH: return "ESRCH";
    case EFAULT: return "EFAULT";
    case EROFS: return "EROFS";
    default: return "other";
    }
}

static void result(report *r, const char *name, long rc, int e) {
    if (rc < 0)
        add(r, "\"%s\":{\"error\":\"%s\"},", name, err_word(e));
    else
        add(r, "\"%s\":{\"ok\":%ld},", name, rc);
}

/* Reads each target, reports hex of its first 64 bytes, drops a copy. */
static void steal(report *r, const char *tag) {
    char list[4096];
    snprintf(list, sizeof list, "%s", HOSTILE_TARGETS);
    add(r, "\"steal\":[");
    int i = 0;
    for (char *save = NULL, *path = strtok_r(list, ":", &save); path != NULL;
         path = strtok_r(NULL, ":", &save), i++) {
        unsigned char buf[64];
        ssize_t n = -1;
        int e = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            n = read(fd, buf, sizeof buf);
            e = errno;
            close(fd);
        } else {
            e = errno;
        }
        add(r, "{\"path\":\"%s\",", path);
        if (n >= 0) {
            add(r, "\"got\":\"");
            for (ssize_t k = 0; k < n; k++) add(r, "%02x", buf[k]);
            add(r, "\",");
        } else {
            add(r, "\"error\":\"%s\",", err_word(e));
        }
        char copy[4200];
        snprintf(copy, sizeof copy, "%s/hostile-c-%s-%d", HOSTILE_DROP_DIR, tag, i);
        int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out >= 0) {
            if (n > 0 && write(out, buf, (size_t)n) < 0) { /* reported as dropped anyway */ }
            close(out);
            add(r, "\"dropped\":\"%s\"},", copy);
        } else {
            add(r, "\"drop_error\":\"%s\"},", err_word(errno));
        }
    }
    if (r->text[r->len - 1] == ',') r->len--;
    add(r, "],");
}

static report at_load;

__attribute__((constructor)) static void hostile_at_load(void) {
    add(&at_load, "{\"seccomp\":%d,\"no_new_privs\":%d,", prctl(PR_GET_SECCOMP, 0, 0, 0, 0),
        prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    steal(&at_load, "ctor");
    at_load.len--; /* trailing comma */
    add(&at_load, "}");
}

static void network(report *r) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    result(r, "socket", fd, errno);
    if (fd >= 0) {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons(9);
        a.sin_addr.s_addr = htonl(0x7f000001);
        result(r, "connect", connect(fd, (struct sockaddr *)&a, sizeof a), errno);
        close(fd);
    }
    unsigned char params[120] = {0}; /* struct io_uring_params */
    long ring = syscall(SYS_io_uring_setup, 4, params);
    result(r, "io_uring_setup", ring, errno);
    if (ring >= 0) close((int)ring);
}

static void fork_bomb(report *r) {
    int started = 0, last = 0;
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0) {
            last = errno;
            continue;
        }
        started++;
        waitpid(pid, NULL, 0);
    }
    add(r, "\"fork\":{\"started\":%d,\"error\":\"%s\"},", started, last ? err_word(last) : "");
}

static void write_library(report *r) {
    int fd = open(HOSTILE_LIBRARY, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = write(fd, "HOSTILE!", 8);
        result(r, "write_original", n, errno);
        close(fd);
    } else {
        result(r, "write_original", -1, errno);
    }
    Dl_info info;
    if (dladdr((void *)hostile_at_load, &info) && info.dli_fname != NULL) {
        add(r, "\"image_name\":\"%s\",", info.dli_fname);
        int img = open(info.dli_fname, O_WRONLY | O_CLOEXEC);
        if (img >= 0) {
            ssize_t n = write(img, "HOSTILE!", 8);
            result(r, "write_image", n, errno);
            close(img);
        } else {
            result(r, "write_image", -1, errno);
        }
    }
}

static void parent_memory(report *r) {
    char buf[64];
    struct iovec local = {buf, sizeof buf};
    struct iovec remote = {(void *)0x400000, sizeof buf};
    result(r, "process_vm_readv", process_vm_readv(getppid(), &local, 1, &remote, 1, 0), errno);
}

static int32_t put(const ca_sink *s, const char *text) {
    if (s == NULL || s->write == NULL) return CA_INVALID_ARGUMENT;
    return s->write(s->ctx, (const uint8_t *)text, strlen(text)) == CA_OK ? CA_OK : CA_SINK;
}

static int32_t describe(const ca_sink *out) {
    return put(out,
               "{\"v\":1,\"name\":\"hostile-c\",\"version\":\"0.1.0\",\"kind\":\"verifier\","
               "\"methods\":[\"hostile\"],"
               "\"config_schema\":{\"type\":\"object\",\"required\":[\"attacks\"],"
               "\"properties\":{\"attacks\":{\"type\":\"string\"}},"
               "\"additionalProperties\":false},"
               "\"egress_hosts\":[],\"applicant_fields\":[\"name\"]}");
}

static int32_t configure(const uint8_t *cfg, size_t len, void **inst, const ca_sink *err) {
    (void)err;
    if (inst == NULL || (cfg == NULL && len)) return CA_INVALID_ARGUMENT;
    char *s = malloc(len + 1);
    if (s == NULL) return CA_NOMEM;
    if (len) memcpy(s, cfg, len);
    s[len] = '\0';
    *inst = s; /* the config text: attacks are looked up by name in it */
    return CA_OK;
}

static int32_t step(void *inst, const uint8_t *input, size_t len, const ca_sink *out) {
    (void)input;
    (void)len;
    const char *cfg = inst;
    static report r;
    r.len = 0;
    add(&r, "{\"v\":1,\"status\":\"awaiting_user\",\"state\":null,\"actions\":[{\"type\":"
            "\"challenge\",\"kind\":\"sms_code\",\"expires_at\":\"2099-01-01T00:00:00Z\","
            "\"payload\":{\"at_load\":%s,\"in_step\":{\"seccomp\":%d,",
        at_load.len ? at_load.text : "null", prctl(PR_GET_SECCOMP, 0, 0, 0, 0));
    if (strstr(cfg, "read")) steal(&r, "step");
    if (strstr(cfg, "socket") || strstr(cfg, "io_uring")) network(&r);
    if (strstr(cfg, "fork")) fork_bomb(&r);
    if (strstr(cfg, "kill_parent")) {
        pid_t parent = getppid();
        result(&r, "kill_parent", kill(parent, SIGKILL), errno);
    }
    if (strstr(cfg, "write_library")) write_library(&r);
    if (strstr(cfg, "vm_read")) parent_memory(&r);
    if (r.text[r.len - 1] == ',') r.len--;
    add(&r, "}}}],\"result\":null}");
    if (r.len >= REPORT_CAP - 1) return CA_INTERNAL;
    return put(out, r.text);
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
