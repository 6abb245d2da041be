/* A correct SMTP server in C (one process per client, fork), for the server grader's tests:
 * built by the Makefile, started as ./run --port PORT --maildir DIR [--domain DOMAIN]. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *maildir = ".", *domain = "lab.test";
static volatile sig_atomic_t stopping = 0;
static int client = -1;
static char in[65536];
static size_t in_len = 0;

static void on_term(int sig) { (void)sig; stopping = 1; }

static void say(const char *text) {
    char buf[600];
    int n = snprintf(buf, sizeof buf, "%s\r\n", text);
    if (write(client, buf, (size_t)n) < 0) _exit(0);
}

/* One line (LF included) into line; returns its length, 0 at end of input, -1 when too long
 * (then the rest of the line is discarded). */
static long read_line(char *line, size_t max) {
    for (;;) {
        char *nl = memchr(in, '\n', in_len);
        if (nl) {
            size_t n = (size_t)(nl - in) + 1;
            long ret = n > max ? -1 : (long)n;
            if (ret > 0) memcpy(line, in, n);
            memmove(in, in + n, in_len - n);
            in_len -= n;
            return ret;
        }
        if (in_len == sizeof in) { in_len = 0; while (1) { /* drop until LF */
            ssize_t r = read(client, in, sizeof in);
            if (r <= 0) return 0;
            char *e = memchr(in, '\n', (size_t)r);
            if (e) { in_len = (size_t)r - (size_t)(e - in) - 1; memmove(in, e + 1, in_len); return -1; }
        } }
        ssize_t r = read(client, in + in_len, sizeof in - in_len);
        if (r <= 0) return 0;
        in_len += (size_t)r;
    }
}

static int path_of(const char *arg, const char *kw, char *out, size_t max) {
    size_t k = strlen(kw);
    if (strncasecmp(arg, kw, k) != 0) return 0;
    arg += k;
    while (*arg == ' ') arg++;
    if (*arg != '<') return 0;
    const char *end = strchr(arg, '>');
    if (!end || (size_t)(end - arg - 1) >= max) return 0;
    memcpy(out, arg + 1, (size_t)(end - arg - 1));
    out[end - arg - 1] = 0;
    return 1;
}

static void deliver(char rcpts[][256], int n, const char *data, size_t len) {
    static int counter = 0;
    for (int i = 0; i < n; i++) {
        char name[128], tmp[1024], new_[1024];
        struct timeval tv;
        gettimeofday(&tv, NULL);
        snprintf(name, sizeof name, "%ld.%ld.P%dQ%d.c", (long)tv.tv_sec, (long)tv.tv_usec, (int)getpid(), ++counter);
        snprintf(tmp, sizeof tmp, "%s/%s/tmp/%s", maildir, rcpts[i], name);
        snprintf(new_, sizeof new_, "%s/%s/new/%s", maildir, rcpts[i], name);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0) continue;
        size_t done = 0;
        while (done < len) { ssize_t w = write(fd, data + done, len - done); if (w <= 0) break; done += (size_t)w; }
        fsync(fd);
        close(fd);
        rename(tmp, new_);
    }
}

static void session(void) {
    char line[70000], arg_path[256], rcpts[100][256], reply[600];
    int greeted = 0, have_sender = 0, nrcpt = 0;
    snprintf(reply, sizeof reply, "220 %s C SMTP server", domain);
    say(reply);
    for (;;) {
        long n = read_line(line, 512);
        if (n == 0) return;
        if (n < 0) { say("500 line too long"); continue; }
        line[n] = 0;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *arg = strchr(line, ' ');
        if (arg) *arg++ = 0; else arg = line + n;
        for (char *p = line; *p; p++) *p = (char)toupper((unsigned char)*p);
        if (!strcmp(line, "QUIT")) { say("221 bye"); return; }
        if (!strcmp(line, "HELO") || !strcmp(line, "EHLO")) {
            if (!*arg) { say("501 domain needed"); continue; }
            greeted = 1; have_sender = 0; nrcpt = 0;
            snprintf(reply, sizeof reply, "250 %s", domain);
            say(reply);
        } else if (!strcmp(line, "NOOP")) say("250 ok");
        else if (!strcmp(line, "RSET")) { have_sender = 0; nrcpt = 0; say("250 ok"); }
        else if (strcmp(line, "MAIL") && strcmp(line, "RCPT") && strcmp(line, "DATA")) say("500 unknown command");
        else if (!greeted) say("503 HELO first");
        else if (!strcmp(line, "MAIL")) {
            if (have_sender) say("503 nested MAIL");
            else if (!path_of(arg, "FROM:", arg_path, sizeof arg_path)) say("501 syntax: MAIL FROM:<address>");
            else { have_sender = 1; nrcpt = 0; say("250 ok"); }
        } else if (!strcmp(line, "RCPT")) {
            if (!have_sender) { say("503 MAIL first"); continue; }
            if (!path_of(arg, "TO:", arg_path, sizeof arg_path) || !strchr(arg_path, '@')) { say("501 syntax: RCPT TO:<address>"); continue; }
            char *at = strrchr(arg_path, '@');
            *at = 0;
            for (char *p = arg_path; *p; p++) *p = (char)tolower((unsigned char)*p);
            char dir[1024];
            struct stat st;
            snprintf(dir, sizeof dir, "%s/%s", maildir, arg_path);
            if (strcasecmp(at + 1, domain) || !*arg_path || strchr(arg_path, '/') || arg_path[0] == '.' ||
                stat(dir, &st) || !S_ISDIR(st.st_mode)) { say("550 no such user here"); continue; }
            if (nrcpt == 100) { say("452 too many recipients"); continue; }
            strcpy(rcpts[nrcpt++], arg_path);
            say("250 ok");
        } else {
            if (!have_sender || !nrcpt) { say("503 no recipients"); continue; }
            say("354 end with <CRLF>.<CRLF>");
            size_t cap = 1 << 20, len = 0;
            char *data = malloc(cap);
            int after_crlf = 1;
            for (;;) {
                long m = read_line(line, sizeof line - 1);
                if (m == 0) { free(data); return; } /* closed mid-DATA: deliver nothing */
                if (m < 0) continue;
                if (m == 3 && !memcmp(line, ".\r\n", 3) && after_crlf) break;
                after_crlf = m >= 2 && line[m - 2] == '\r';
                char *start = line[0] == '.' ? line + 1 : line;
                size_t k = (size_t)(line + m - start);
                if (len + k > cap) { cap = (len + k) * 2; data = realloc(data, cap); }
                memcpy(data + len, start, k);
                len += k;
            }
            deliver(rcpts, nrcpt, data, len);
            free(data);
            have_sender = 0; nrcpt = 0;
            say("250 accepted");
        }
    }
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--maildir")) maildir = argv[i + 1];
        else if (!strcmp(argv[i], "--domain")) domain = argv[i + 1];
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_term;   /* no SA_RESTART: accept() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGCHLD, SIG_IGN);  /* children reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) { perror("bind"); return 1; }
    while (!stopping) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            close(s);
            client = c;
            session();
            close(c);
            _exit(0);
        }
        close(c);
    }
    signal(SIGTERM, SIG_IGN);
    kill(0, SIGTERM);  /* the sessions still open end with the server */
    return 0;
}
