/*
 * blast: the C send/receive engine of bench/freeradius/loadgen.py.
 *
 * loadgen.py builds and signs every packet (its Builder stays the only packet
 * builder), writes them to a file as records of <uint32 little-endian length>
 * + packet bytes, and runs this program with the parameters its Python run()
 * would have used.  The loop keeps run()'s semantics:
 *
 *   - packet i uses slot i % (nsock*256): socket slot % nsock, identifier
 *     already in the packet; a slot still held by an older request stalls
 *     sending (window_stalls);
 *   - at most --window requests in flight; timed-out requests are sent again
 *     unchanged up to --retries times, then counted lost;
 *   - replies are matched by (socket, identifier), their Response
 *     Authenticator checked: MD5(code+id+length + request authenticator +
 *     reply attributes + secret); replies for a free slot (late duplicates)
 *     are ignored;
 *   - with --rate, packet i is due at t0 + i/rate; latency is also measured
 *     from that due time (sched_p99_ms, no coordinated omission) and a packet
 *     sent more than 10 ms after it was due counts as a late send.
 *
 * Timing: CLOCK_MONOTONIC and a timer slack of 1 ns.  Replies are timed by
 * the kernel's receive timestamp (SO_TIMESTAMPNS), not by when this loop gets
 * to read them (--user-timestamps: when read, as run() does).  With --rate the
 * loop sleeps (clock_nanosleep) until shortly before the next due time -- how
 * shortly adapts to about the 90th percentile of how late wake-ups come, at
 * most --spin-us (default 50 us) -- then spins to it, so requests leave on
 * schedule instead of in 1 ms bursts; replies already queued are read between
 * sends.  Otherwise it waits for replies with epoll_pwait2 (ns timeout).
 * Replies are read with recvmmsg, packets due together go out with sendmmsg.
 * --verbose prints how far behind schedule requests left (stderr).
 *
 * Prints one JSON line with the keys of loadgen.py's run() plus "engine": "c".
 *
 *   cc -O2 -Wall -Wextra -std=gnu99 -o bench/.build/blast bench/radius/blast.c -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h> /* isfinite (a macro: no -lm) */
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IDS 256
#define RECV_BATCH 64           /* replies read per socket per wake-up (run() reads up to 64) */
#define SEND_BATCH 1024         /* new requests sent per loop turn */
#define MAX_WAIT_NS 50000000LL  /* run() never waits more than 50 ms */
#define LATE_NS 10000000LL      /* a send more than 10 ms after its due time is late */
#define MAX_PKT 4096

typedef int64_t ns_t;

static ns_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ns_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double tv_seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6; }

static void die(const char *what)
{
    fprintf(stderr, "blast: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *msg)
{
    fprintf(stderr, "blast: %s\n", msg);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        fail("out of memory");
    return p;
}

/* --- options ------------------------------------------------------------ */

struct opts {
    const char *target, *source, *secret, *label, *kind, *packets;
    int nsock, window, retries, verify, verbose, user_timestamps;
    double rate, duration, timeout, spin_us, tick_us;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: blast --packets FILE --target HOST:PORT [--source ADDR] [--sockets N]\n"
            "             [--window N] [--rate R] [--duration S] [--timeout S] [--retries N]\n"
            "             [--secret S | --no-verify] [--label L] [--kind K] [--spin-us US]\n"
            "             [--user-timestamps] [--verbose]\n"
            "--spin-us: with --rate, busy-wait at most this long before a due time (default 50)\n"
            "--tick-us: with --rate, wake at most once per this many us and send all that is due (default 100;\n"
            "           0 = wake for every request). Fewer wake-ups leave the core to the rest of the machine;\n"
            "           latency is still measured from each request's due time\n"
            "--user-timestamps: time replies when read, as loadgen.py's Python loop does, instead\n"
            "                   of by the kernel's receive timestamp (SO_TIMESTAMPNS)\n"
            "--verbose: with --rate, how far behind its due time each request left (stderr)\n");
    exit(2);
}

static double parse_double(const char *s, const char *name)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0) {
        fprintf(stderr, "blast: bad --%s: %s\n", name, s);
        exit(2);
    }
    return v;
}

static int parse_int(const char *s, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000000L) {
        fprintf(stderr, "blast: bad --%s: %s\n", name, s);
        exit(2);
    }
    return (int)v;
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"target", required_argument, 0, 't'},   {"source", required_argument, 0, 's'},
        {"sockets", required_argument, 0, 'n'},  {"window", required_argument, 0, 'w'},
        {"rate", required_argument, 0, 'r'},     {"duration", required_argument, 0, 'd'},
        {"timeout", required_argument, 0, 'T'},  {"retries", required_argument, 0, 'R'},
        {"secret", required_argument, 0, 'S'},   {"no-verify", no_argument, 0, 'V'},
        {"label", required_argument, 0, 'l'},    {"kind", required_argument, 0, 'k'},
        {"packets", required_argument, 0, 'p'},  {"spin-us", required_argument, 0, 'u'},
        {"tick-us", required_argument, 0, 1001},
        {"verbose", no_argument, 0, 'v'},        {"user-timestamps", no_argument, 0, 'U'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->source = "127.0.0.2";
    o->secret = "testing123";
    o->label = "auth";
    o->kind = "pap";
    o->nsock = 2;
    o->window = 1024;
    o->retries = 2;
    o->verify = 1;
    o->timeout = 3.0;
    o->spin_us = 50.0;
    o->tick_us = 100.0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->target = optarg; break;
        case 's': o->source = optarg; break;
        case 'n': o->nsock = parse_int(optarg, "sockets"); break;
        case 'w': o->window = parse_int(optarg, "window"); break;
        case 'r': o->rate = parse_double(optarg, "rate"); break;
        case 'd': o->duration = parse_double(optarg, "duration"); break;
        case 'T': o->timeout = parse_double(optarg, "timeout"); break;
        case 'R': o->retries = parse_int(optarg, "retries"); break;
        case 'S': o->secret = optarg; break;
        case 'V': o->verify = 0; break;
        case 'l': o->label = optarg; break;
        case 'k': o->kind = optarg; break;
        case 'p': o->packets = optarg; break;
        case 'u': o->spin_us = parse_double(optarg, "spin-us"); break;
        case 1001: o->tick_us = parse_double(optarg, "tick-us"); break;
        case 'v': o->verbose = 1; break;
        case 'U': o->user_timestamps = 1; break;
        default: usage();
        }
    }
    if (optind != argc || !o->target || !o->packets || o->nsock < 1 || o->window < 1)
        usage();
}

/* --- packets file ------------------------------------------------------- */

struct packets {
    unsigned char *data;
    size_t *off;
    uint32_t *len;
    long n;
};

static void read_packets(const char *path, struct packets *p)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        die(path);
    size_t size = (size_t)st.st_size;
    p->data = xcalloc(size, 1);
    for (size_t got = 0; got < size;) {
        ssize_t r = read(fd, p->data + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die(path);
        got += (size_t)r;
    }
    close(fd);
    long n = 0;
    for (size_t pos = 0; pos < size; n++) {
        if (size - pos < 4)
            fail("packets file: truncated length");
        const unsigned char *b = p->data + pos;
        uint32_t len = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if (len < 20 || len > MAX_PKT || size - pos - 4 < len)
            fail("packets file: bad record (length < 20, > 4096 or past the end)");
        pos += 4 + len;
    }
    p->n = n;
    p->off = xcalloc((size_t)n, sizeof *p->off);
    p->len = xcalloc((size_t)n, sizeof *p->len);
    size_t pos = 0;
    for (long i = 0; i < n; i++) {
        const unsigned char *b = p->data + pos;
        p->len[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        p->off[i] = pos + 4;
        pos += 4 + p->len[i];
    }
}

/* --- sockets ------------------------------------------------------------ */

static void resolve(const char *host, const char *port, struct sockaddr_in *out)
{
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "blast: cannot resolve %s: %s\n", host, gai_strerror(rc));
        exit(2);
    }
    memcpy(out, res->ai_addr, sizeof *out);
    freeaddrinfo(res);
}

static int open_socket(const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket");
    int buf = 4 << 20;
    if (setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf) < 0)
        die("SO_RCVBUF");
    if (setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf) < 0)
        die("SO_SNDBUF");
    if (bind(s, (const struct sockaddr *)src, sizeof *src) < 0)
        die("bind");
    if (connect(s, (const struct sockaddr *)dst, sizeof *dst) < 0)
        die("connect");
    return s;
}

/* --- timeouts: a FIFO (constant timeout, so deadlines come in order) ------ */

struct tmo {
    ns_t deadline;
    long idx;
    int slot, tries;
};

struct fifo {
    struct tmo *a;
    size_t cap, head, len;
};

static void fifo_push(struct fifo *f, struct tmo t)
{
    if (f->len == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 4096;
        struct tmo *a = xcalloc(cap, sizeof *a);
        for (size_t i = 0; i < f->len; i++)
            a[i] = f->a[(f->head + i) % f->cap];
        free(f->a);
        f->a = a;
        f->cap = cap;
        f->head = 0;
    }
    f->a[(f->head + f->len) % f->cap] = t;
    f->len++;
}

static struct tmo *fifo_first(struct fifo *f) { return f->len ? &f->a[f->head] : NULL; }

static void fifo_pop(struct fifo *f)
{
    f->head = (f->head + 1) % f->cap;
    f->len--;
}

/* --- JSON output -------------------------------------------------------- */

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* a finite double as Python's repr() writes it: the fewest digits that read
 * back as v, positional for exponents -4..15 (at least one decimal), else 1e+16 */
static void json_float(double v)
{
    char buf[64];
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    int exp10 = atoi(strchr(buf, 'e') + 1);
    if (exp10 >= -4 && exp10 < 16) {
        int decimals = digits - 1 - exp10;
        snprintf(buf, sizeof buf, "%.*f", decimals < 1 ? 1 : decimals, v);
    }
    fputs(buf, stdout);
}

/* Python's round(x, digits) for the values printed here */
static void json_round(double v, int digits)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", digits, v);
    json_float(strtod(buf, NULL));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *code_name(int c)
{
    switch (c) {
    case 2: return "Access-Accept";
    case 3: return "Access-Reject";
    case 5: return "Accounting-Response";
    case 11: return "Access-Challenge";
    default: return NULL;
    }
}

static void json_pct(const double *lat, long n, double p)
{
    if (!n) {
        fputs("null", stdout);
        return;
    }
    long i = (long)(p * (double)n);
    if (i > n - 1)
        i = n - 1;
    json_round(lat[i] * 1000.0, 3);
}

/* --- the engine ----------------------------------------------------------- */

struct engine {
    struct opts o;
    struct packets pk;
    int nsock, nslots, window, ep, *socks;
    long *busy;        /* slot -> request index in flight, -1 free */
    ns_t *first_tx;    /* slot -> first transmission */
    ns_t *due_at;      /* slot -> when --rate scheduled it */
    int *tries;        /* slot -> transmissions so far */
    double *latencies, *sched_lat, *send_lag;  /* one per answered (sent) request, sorted at the end */
    long answered, nsched, bad_auth, inflight, codes[256];
    ns_t last_answer;
    int kernel_ts;
    EVP_MD_CTX *md;
    const EVP_MD *md5;
    size_t secret_len;
    /* recvmmsg buffers */
    unsigned char rbuf[RECV_BATCH][MAX_PKT];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct timespec))];
    } rctl[RECV_BATCH];
    struct mmsghdr rmsg[RECV_BATCH];
    struct iovec riov[RECV_BATCH];
    struct epoll_event events[256];
    unsigned char vbuf[MAX_PKT + 512];
};

/* when the kernel queued the reply (SO_TIMESTAMPNS, CLOCK_REALTIME) on our monotonic clock */
static ns_t rx_time(struct engine *E, struct msghdr *h, ns_t mono, ns_t realtime)
{
    if (!E->kernel_ts)
        return mono;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            ns_t t = (ns_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - (realtime - mono);
            return t <= mono ? t : mono;
        }
    }
    return mono;
}

/* read up to RECV_BATCH replies from socket k; match, verify and time them */
static void receive(struct engine *E, int k)
{
    for (int i = 0; i < RECV_BATCH; i++) {
        E->rmsg[i].msg_hdr.msg_control = E->kernel_ts ? E->rctl[i].buf : NULL;
        E->rmsg[i].msg_hdr.msg_controllen = E->kernel_ts ? sizeof E->rctl[i].buf : 0;
    }
    int got = recvmmsg(E->socks[k], E->rmsg, RECV_BATCH, MSG_DONTWAIT, NULL);
    if (got <= 0)
        return;
    struct timespec rt;
    ns_t mono = now_ns();
    clock_gettime(CLOCK_REALTIME, &rt);
    ns_t realtime = (ns_t)rt.tv_sec * 1000000000LL + rt.tv_nsec;
    for (int i = 0; i < got; i++) {
        const unsigned char *data = E->rbuf[i];
        size_t len = E->rmsg[i].msg_len;
        if (len < 20 || (E->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC))
            continue;
        int slot = data[1] * E->nsock + k;
        long idx = E->busy[slot];
        if (idx == -1)
            continue;  /* late duplicate reply */
        if (E->o.verify) {
            const unsigned char *req = E->pk.data + E->pk.off[idx];
            unsigned char digest[EVP_MAX_MD_SIZE];
            unsigned int dlen = 0;
            memcpy(E->vbuf, data, len);
            memcpy(E->vbuf + 4, req + 4, 16);
            memcpy(E->vbuf + len, E->o.secret, E->secret_len);
            if (!EVP_DigestInit_ex(E->md, E->md5, NULL) || !EVP_DigestUpdate(E->md, E->vbuf, len + E->secret_len) ||
                !EVP_DigestFinal_ex(E->md, digest, &dlen))
                fail("MD5 failed");
            if (dlen != 16 || memcmp(digest, data + 4, 16) != 0) {
                E->bad_auth++;
                continue;
            }
        }
        ns_t t = rx_time(E, &E->rmsg[i].msg_hdr, mono, realtime);
        if (t < E->first_tx[slot])
            t = mono;  /* a clock step: fall back to the time of reading */
        E->latencies[E->answered++] = (double)(t - E->first_tx[slot]) * 1e-9;
        if (E->sched_lat)
            E->sched_lat[E->nsched++] = (double)(t - E->due_at[slot]) * 1e-9;
        if (t > E->last_answer)
            E->last_answer = t;
        E->codes[data[0]]++;
        E->busy[slot] = -1;
        E->inflight--;
    }
}

/* wait up to `wait` ns for replies and read them */
static void poll_replies(struct engine *E, ns_t wait)
{
    struct timespec ts = {.tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL};
    int nev = epoll_pwait2(E->ep, E->events, 256, &ts, NULL);
    if (nev < 0 && errno != EINTR)
        die("epoll_pwait2");
    for (int e = 0; e < nev; e++)
        receive(E, (int)E->events[e].data.u32);
}

static void sleep_until(ns_t t)
{
    struct timespec ts = {.tv_sec = t / 1000000000LL, .tv_nsec = t % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

int main(int argc, char **argv)
{
    static struct engine eng;
    struct engine *E = &eng;
    struct opts *o = &E->o;
    parse_opts(argc, argv, o);
    read_packets(o->packets, &E->pk);
    const long n = E->pk.n;

    char host[256];
    const char *colon = strrchr(o->target, ':');
    if (!colon || colon == o->target || (size_t)(colon - o->target) >= sizeof host)
        fail("--target must be host:port");
    memcpy(host, o->target, (size_t)(colon - o->target));
    host[colon - o->target] = 0;
    struct sockaddr_in dst, src;
    resolve(host, colon + 1, &dst);
    resolve(o->source, "0", &src);

    /* precise sleeps: no 50 us timer slack on our wake-ups */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

    const int nsock = E->nsock = o->nsock;
    E->kernel_ts = !o->user_timestamps;
    E->socks = xcalloc((size_t)nsock, sizeof *E->socks);
    E->ep = epoll_create1(EPOLL_CLOEXEC);
    if (E->ep < 0)
        die("epoll_create1");
    for (int k = 0; k < nsock; k++) {
        int s = E->socks[k] = open_socket(&src, &dst);
        int on = 1;
        if (E->kernel_ts && setsockopt(s, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0)
            die("SO_TIMESTAMPNS");
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)k};
        if (epoll_ctl(E->ep, EPOLL_CTL_ADD, s, &ev) < 0)
            die("epoll_ctl");
    }
    for (int i = 0; i < RECV_BATCH; i++) {
        E->riov[i].iov_base = E->rbuf[i];
        E->riov[i].iov_len = MAX_PKT;
        E->rmsg[i].msg_hdr.msg_iov = &E->riov[i];
        E->rmsg[i].msg_hdr.msg_iovlen = 1;
    }

    const int nslots = E->nslots = nsock * IDS;
    const int window = E->window = o->window < nslots ? o->window : nslots;
    E->busy = xcalloc((size_t)nslots, sizeof *E->busy);
    E->first_tx = xcalloc((size_t)nslots, sizeof *E->first_tx);
    E->due_at = xcalloc((size_t)nslots, sizeof *E->due_at);
    E->tries = xcalloc((size_t)nslots, sizeof *E->tries);
    for (int s = 0; s < nslots; s++)
        E->busy[s] = -1;
    E->latencies = xcalloc((size_t)n, sizeof *E->latencies);  /* each request is answered at most once */
    E->sched_lat = o->rate > 0 ? xcalloc((size_t)n, sizeof *E->sched_lat) : NULL;
    E->send_lag = o->rate > 0 && o->verbose ? xcalloc((size_t)n, sizeof *E->send_lag) : NULL;
    struct fifo timeouts = {0};

    /* sendmmsg: per socket, the new requests of one loop turn */
    struct mmsghdr **smsg = xcalloc((size_t)nsock, sizeof *smsg);
    struct iovec **siov = xcalloc((size_t)nsock, sizeof *siov);
    int *scount = xcalloc((size_t)nsock, sizeof *scount);
    for (int k = 0; k < nsock; k++) {
        smsg[k] = xcalloc(SEND_BATCH, sizeof **smsg);
        siov[k] = xcalloc(SEND_BATCH, sizeof **siov);
    }
    E->secret_len = strlen(o->secret);
    if (E->secret_len > 512)
        fail("--secret too long");
    E->md = EVP_MD_CTX_new();
    E->md5 = EVP_md5();
    if (!E->md || !E->md5)
        fail("OpenSSL MD5 unavailable");

    const double rate = o->rate;
    const ns_t timeout = (ns_t)(o->timeout * 1e9 + 0.5);
    const ns_t spin_max = (ns_t)(o->spin_us * 1e3 + 0.5);
    ns_t early = spin_max < 20000 ? spin_max : 20000;  /* wake this long before a due time, then spin */
    const ns_t tick = (ns_t)(o->tick_us * 1e3 + 0.5);
    ns_t last_wake = 0;
    long lost = 0, retransmits = 0, stalled = 0, late = 0, nxt = 0, refused = 0;
    ns_t spun = 0;  /* busy-waiting before due times: part of loadgen_cpu_s */
    int stopped = 0;

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    const ns_t t0 = now_ns();
    const ns_t stop_at = o->duration > 0 ? t0 + (ns_t)(o->duration * 1e9 + 0.5) : 0;
    E->last_answer = t0;
#define DUE(i) (t0 + (ns_t)((double)(i) * 1e9 / rate))

    for (;;) {
        ns_t now = now_ns();
        if (!stopped && stop_at && now >= stop_at)
            stopped = 1;

        /* 1. send new requests while the window (and the rate) allow */
        if (!stopped) {
            long start = nxt, j = nxt;
            while (j < n && E->inflight + (j - start) < window && j - start < SEND_BATCH) {
                ns_t due = now;
                if (rate > 0) {
                    due = DUE(j);
                    if (due > now)
                        break;
                }
                int slot = (int)(j % nslots);
                if (E->busy[slot] != -1) {  /* its (port, id) is still held by an older request */
                    stalled++;
                    break;
                }
                if (rate > 0 && now - due > LATE_NS)
                    late++;
                if (E->send_lag)
                    E->send_lag[j] = (double)(now - due) * 1e-9;
                int k = slot % nsock, m = scount[k]++;
                siov[k][m].iov_base = E->pk.data + E->pk.off[j];
                siov[k][m].iov_len = E->pk.len[j];
                memset(&smsg[k][m].msg_hdr, 0, sizeof smsg[k][m].msg_hdr);
                smsg[k][m].msg_hdr.msg_iov = &siov[k][m];
                smsg[k][m].msg_hdr.msg_iovlen = 1;
                E->busy[slot] = j;
                E->first_tx[slot] = now;
                E->due_at[slot] = due;
                E->tries[slot] = 1;
                fifo_push(&timeouts, (struct tmo){now + timeout, j, slot, 1});
                j++;
            }
            E->inflight += j - start;
            nxt = j;
            for (int k = 0; k < nsock; k++) {
                int sent = 0, spins = 0;
                while (sent < scount[k]) {
                    int r = sendmmsg(E->socks[k], smsg[k] + sent, (unsigned)(scount[k] - sent), 0);
                    if (r > 0) {
                        sent += r;
                    } else if (r < 0 && errno == ECONNREFUSED && spins++ < 1000) {
                        refused++;  /* an ICMP port unreachable for an earlier packet: this one was not sent */
                    } else if (r < 0 && (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) && spins++ < 1000) {
                        /* send buffer full: wait for room (run() would retry the same packet) */
                        struct pollfd pfd = {.fd = E->socks[k], .events = POLLOUT};
                        poll(&pfd, 1, 1);
                    } else {
                        /* give up on the rest: their timeouts retransmit them */
                        fprintf(stderr, "blast: sendmmsg: %s\n", r < 0 ? strerror(errno) : "sent nothing");
                        break;
                    }
                }
                scount[k] = 0;
            }
            if (j > start)
                now = now_ns();
        }
        if (E->inflight == 0 && (stopped || nxt >= n))
            break;

        /* 2. timeouts: retransmit or give up */
        struct tmo *t;
        int drained = 0;
        while ((t = fifo_first(&timeouts)) && t->deadline <= now) {
            struct tmo e = *t;
            if (E->busy[e.slot] == e.idx && E->tries[e.slot] == e.tries && !drained) {
                /* its reply may be queued unread (with --rate replies are read between sends) */
                poll_replies(E, 0);
                drained = 1;
                continue;
            }
            fifo_pop(&timeouts);
            if (E->busy[e.slot] != e.idx || E->tries[e.slot] != e.tries)
                continue;
            if (e.tries <= o->retries) {
                int fd = E->socks[e.slot % nsock];
                const unsigned char *pkt = E->pk.data + E->pk.off[e.idx];
                ssize_t r = send(fd, pkt, E->pk.len[e.idx], 0);
                if (r < 0 && errno == ECONNREFUSED) {  /* as above: the error was for an earlier packet */
                    refused++;
                    r = send(fd, pkt, E->pk.len[e.idx], 0);
                }
                if (r < 0 && errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED)
                    fprintf(stderr, "blast: send: %s\n", strerror(errno));
                E->tries[e.slot] = e.tries + 1;
                retransmits++;
                fifo_push(&timeouts, (struct tmo){now + timeout, e.idx, e.slot, e.tries + 1});
            } else {
                E->busy[e.slot] = -1;
                E->inflight--;
                lost++;
                if (E->inflight == 0 && (stopped || nxt >= n))
                    break;
            }
        }
        if (E->inflight == 0 && (stopped || nxt >= n))
            break;

        /* 3. wait (not at all if more can be sent right now) */
        int can_send = !stopped && nxt < n && E->inflight < window && E->busy[nxt % nslots] == -1;
        if (can_send && !(rate > 0)) {
            poll_replies(E, 0);
            continue;
        }
        ns_t wake = now + MAX_WAIT_NS;
        if ((t = fifo_first(&timeouts)) && t->deadline < wake)
            wake = t->deadline;
        if (stop_at && !stopped && stop_at < wake)
            wake = stop_at;
        if (!(rate > 0 && can_send)) {
            /* window full or slot busy: replies are what we wait for */
            poll_replies(E, wake > now ? wake - now : 0);
            continue;
        }
        /* --rate: the next request is due at `due` */
        ns_t due = DUE(nxt);
        if (!E->kernel_ts) {
            /* replies are timed when read: wake for them too, sleep at most until `early` before `due` */
            if (due - early < wake)
                wake = due - early;
            poll_replies(E, wake > now ? wake - now : 0);
            ns_t s0 = now_ns(), s1 = s0;
            while (s1 < due && due - s1 <= early)
                s1 = now_ns();
            spun += s1 - s0;
            continue;
        }
        if (tick > 0) {
            /* replies carry the kernel's receive time: read those that are there, then
             * sleep until `due`, but wake at most once a tick (what is due by then is
             * sent together; its lateness counts in the latency from schedule) */
            poll_replies(E, 0);
            ns_t target = due > last_wake + tick ? due : last_wake + tick;
            if (target < wake)
                wake = target;
            if (wake > now_ns())
                sleep_until(wake);
            last_wake = now_ns();
            continue;
        }
        /* replies carry the kernel's receive time: read those that are there, then
         * sleep until just before `due` (how early: about the 90th percentile of
         * how late a wake-up comes, at most --spin-us) and spin to it */
        poll_replies(E, 0);
        int for_due = due - early <= wake;
        if (for_due)
            wake = due - early;
        if (wake > now_ns()) {
            sleep_until(wake);
            if (for_due && spin_max > 0) {
                ns_t overshoot = now_ns() - wake;
                early += overshoot > early ? 900 : -100;  /* tracks the 90th percentile */
                if (early > spin_max)
                    early = spin_max;
                if (early < 0)
                    early = 0;
            }
        }
        if (for_due) {
            ns_t s0 = now_ns(), s1 = s0;
            while (s1 < due)
                s1 = now_ns();
            spun += s1 - s0;
        }
    }
    const ns_t end = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = tv_seconds(ru1.ru_utime) - tv_seconds(ru0.ru_utime) + tv_seconds(ru1.ru_stime) - tv_seconds(ru0.ru_stime);
    for (int k = 0; k < nsock; k++)
        close(E->socks[k]);
    close(E->ep);
    EVP_MD_CTX_free(E->md);

    const long answered = E->answered, nsched = E->nsched;
    double *lat = E->latencies, *sched = E->sched_lat;
    qsort(lat, (size_t)answered, sizeof *lat, cmp_double);
    if (sched)
        qsort(sched, (size_t)nsched, sizeof *sched, cmp_double);
    if (E->send_lag && nxt) {
        double *g = E->send_lag;
        qsort(g, (size_t)nxt, sizeof *g, cmp_double);
        fprintf(stderr, "blast: %s: send lag behind schedule (us): p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f; "
                "wake-up lead %.1f us; spun %.2f s of the CPU time\n", o->label, g[nxt / 2] * 1e6, g[(long)(0.9 * (double)nxt)] * 1e6,
                g[(long)(0.99 * (double)nxt)] * 1e6, g[(long)(0.999 * (double)nxt)] * 1e6, g[nxt - 1] * 1e6,
                (double)early * 1e-3, (double)spun * 1e-9);
    }
    if (refused)
        fprintf(stderr, "blast: %s: %ld ICMP port unreachable (connection refused) from %s\n", o->label, refused,
                o->target);
    double active = (double)(E->last_answer - t0) * 1e-9;
    if (active < 1e-9)
        active = 1e-9;

    fputs("{\"label\": ", stdout);
    json_str(o->label);
    fputs(", \"kind\": ", stdout);
    json_str(o->kind);
    fputs(", \"target\": ", stdout);
    json_str(o->target);
    printf(", \"window\": %d, \"sockets\": %d, \"rate_offered\": ", window, nsock);
    if (rate > 0)
        json_float(rate);
    else
        fputs("null", stdout);
    printf(", \"sent\": %ld, \"answered\": %ld, \"lost\": %ld, \"retransmits\": %ld, \"bad_authenticator\": %ld",
           nxt, answered, lost, retransmits, E->bad_auth);
    fputs(", \"seconds\": ", stdout);
    json_round((double)(end - t0) * 1e-9, 3);
    fputs(", \"answered_per_s\": ", stdout);
    json_round((double)answered / active, 1);
    fputs(", \"p50_ms\": ", stdout);
    json_pct(lat, answered, 0.5);
    fputs(", \"p90_ms\": ", stdout);
    json_pct(lat, answered, 0.9);
    fputs(", \"p99_ms\": ", stdout);
    json_pct(lat, answered, 0.99);
    fputs(", \"max_ms\": ", stdout);
    json_pct(lat, answered, 1.0);
    fputs(", \"codes\": {", stdout);
    for (int c = 0, first = 1; c < 256; c++) {
        if (!E->codes[c])
            continue;
        const char *name = code_name(c);
        if (name)
            printf("%s\"%s\": %ld", first ? "" : ", ", name, E->codes[c]);
        else
            printf("%s\"%d\": %ld", first ? "" : ", ", c, E->codes[c]);
        first = 0;
    }
    printf("}, \"window_stalls\": %ld, \"late_sends\": %ld, \"sched_p99_ms\": ", stalled, late);
    if (nsched)
        json_round(sched[(long)(0.99 * (double)nsched)] * 1000.0, 3);
    else
        fputs("null", stdout);
    fputs(", \"loadgen_cpu_s\": ", stdout);
    json_round(cpu, 2);
    fputs(", \"loadgen_us_per_req\": ", stdout);
    json_round(cpu * 1e6 / (double)(answered > 1 ? answered : 1), 1);
    fputs(", \"engine\": \"c\"}\n", stdout);
    fflush(stdout);
    return 0;
}
