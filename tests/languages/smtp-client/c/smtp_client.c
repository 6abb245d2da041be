/* A correct smtp-client in C (the contract of ../shared/contracts.md and the exercise statement),
 * written for the grader's language matrix.  Built by the Makefile into ./run.
 *
 * Exit status: 0 accepted for every recipient, 3 for some, 1 refused (or the server closed the
 * connection / stopped answering for 10 s), 2 server unreachable or greeting 4xx/5xx. */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define READ_TIMEOUT 10 /* seconds: the contract's read timeout */

static int sock = -1;
static char inbuf[4096];
static size_t inlen, inpos;

/* Writes everything or reports the failure; MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE. */
static int send_all(const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = send(sock, data, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Why the last read failed: NULL while the connection is fine. */
static const char *gone;

/* One line without its CRLF; lines longer than the buffer are cut, never split in two. */
static int read_line(char *line, size_t size) {
    size_t n = 0;
    for (;;) {
        if (inpos == inlen) {
            ssize_t r = recv(sock, inbuf, sizeof inbuf, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                gone = "the server stopped answering (timed out after 10 s)";
                return -1;
            }
            if (r <= 0) {
                gone = "the server closed the connection";
                return -1;
            }
            inlen = (size_t)r;
            inpos = 0;
        }
        char c = inbuf[inpos++];
        if (c == '\n') break;
        if (n + 1 < size) line[n++] = c;
    }
    if (n > 0 && line[n - 1] == '\r') n--;
    line[n] = 0;
    return 0;
}

/* One whole reply: lines "250-..." continue, "250 ..." ends it (RFC 5321 section 4.2.1).
 * Returns its code, or -1 when the server is gone; `last` keeps the last line. */
static char last[1024];
static int reply(void) {
    for (;;) {
        if (read_line(last, sizeof last) < 0) return -1;
        if (strlen(last) < 4 || last[3] != '-') return atoi(last);
    }
}

/* Sends one command line and reads its reply. */
static int command(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n > sizeof buf - 3) n = (int)sizeof buf - 3;
    memcpy(buf + n, "\r\n", 2);
    if (send_all(buf, (size_t)n + 2) < 0) {
        gone = "the server closed the connection";
        return -1;
    }
    return reply();
}

/* The server went away before the message was accepted: exit 1 with the reason (no QUIT). */
static void server_gone(void) {
    fprintf(stderr, "error: %s\n", gone);
    exit(1);
}

/* A refusal: say why, QUIT while the connection is open (its reply does not matter), exit. */
static void give_up(int status, const char *what) {
    fprintf(stderr, "error: %s: %s\n", what, last);
    command("QUIT");
    exit(status);
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of n octets into out (RFC 2045 section 6.8), no line breaks; returns its length. */
static size_t base64(const unsigned char *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

/* "Subject: " plus the subject; a non-ASCII one as RFC 2047 "B" encoded-words of UTF-8, each
 * at most 75 characters and holding whole characters (RFC 2047 sections 2 and 5), one per
 * folded line (CRLF SP, RFC 5322 section 2.2.3) of at most 76 characters (RFC 2047 section 2). */
static int send_subject(const char *subject) {
    size_t n = strlen(subject);
    if (is_ascii(subject, n)) {
        if (send_all("Subject: ", 9) < 0 || send_all(subject, n) < 0) return -1;
        return send_all("\r\n", 2);
    }
    if (send_all("Subject:", 8) < 0) return -1;
    /* 39 octets of text give 52 of base64: "Subject: =?utf-8?B?...?=" is 73 characters */
    size_t i = 0;
    while (i < n) {
        size_t end = i + 39 < n ? i + 39 : n;
        while (end < n && end > i && ((unsigned char)subject[end] & 0xC0) == 0x80) end--;  /* whole characters */
        if (end == i) end = i + 39 < n ? i + 39 : n;  /* not UTF-8 after all: cut anywhere */
        char word[128] = " =?utf-8?B?";
        size_t len = 11 + base64((const unsigned char *)subject + i, end - i, word + 11);
        memcpy(word + len, "?=", 2);
        len += 2;
        if (i > 0 && send_all("\r\n", 2) < 0) return -1;
        if (send_all(word, len) < 0) return -1;
        i = end;
    }
    return send_all("\r\n", 2);
}

/* The whole body file, with a final NUL; NULL when it cannot be read. */
static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    size_t r;
    while (data && (r = fread(data + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) data = realloc(data, cap *= 2);
    }
    fclose(f);
    if (!data) return NULL;
    data[n] = 0;
    *size = n;
    return data;
}

/* The body's text lines joined with CRLF; an ASCII body line by line with dot-stuffing
 * (RFC 5321 section 4.5.2), a non-ASCII one as base64 in lines of 76 (the header says so). */
static int send_body(char *body, size_t n, int ascii) {
    /* normalise the line ends to CRLF into a new buffer */
    char *text = malloc(2 * n + 3);
    if (!text) return -1;
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (body[i] == '\r' && i + 1 < n && body[i + 1] == '\n') continue;
        if (body[i] == '\n') text[t++] = '\r';
        text[t++] = body[i];
    }
    if (t > 0 && text[t - 1] != '\n') {
        text[t++] = '\r';
        text[t++] = '\n';
    }
    int rc = 0;
    if (ascii) {
        for (size_t i = 0; i < t && rc == 0;) {
            char *eol = memchr(text + i, '\n', t - i);
            size_t len = (size_t)(eol - (text + i)) + 1;
            if (text[i] == '.') rc = send_all(".", 1);
            if (rc == 0) rc = send_all(text + i, len);
            i += len;
        }
    } else {
        char *b = malloc(t / 3 * 4 + 8);
        if (!b) { free(text); return -1; }
        size_t blen = base64((unsigned char *)text, t, b);
        for (size_t i = 0; i < blen && rc == 0; i += 76) {
            rc = send_all(b + i, blen - i < 76 ? blen - i : 76);
            if (rc == 0) rc = send_all("\r\n", 2);
        }
        free(b);
    }
    free(text);
    return rc;
}

int main(int argc, char **argv) {
    const char *server = NULL, *port = NULL, *from = NULL, *subject = "", *body_path = NULL;
    const char *to[64];
    int nto = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--server")) server = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = argv[i + 1];
        else if (!strcmp(argv[i], "--from")) from = argv[i + 1];
        else if (!strcmp(argv[i], "--to") && nto < 64) to[nto++] = argv[i + 1];
        else if (!strcmp(argv[i], "--subject")) subject = argv[i + 1];
        else if (!strcmp(argv[i], "--body-file")) body_path = argv[i + 1];
    }
    if (!server || !port || !from || !nto || !body_path) {
        fprintf(stderr, "usage: run --server H --port P --from A --to B --subject S --body-file F\n");
        return 2;
    }
    size_t body_size;
    char *body = read_file(body_path, &body_size);
    if (!body) {
        fprintf(stderr, "error: cannot read the body file %s\n", body_path);
        return 2;
    }
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(server, port, &hints, &ai) != 0) {
        fprintf(stderr, "error: cannot resolve %s\n", server);
        return 2;
    }
    sock = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (sock < 0 || connect(sock, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "error: cannot connect to %s:%s\n", server, port);
        return 2;
    }
    freeaddrinfo(ai);
    struct timeval timeout = {READ_TIMEOUT, 0};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

    int code = reply();
    if (code < 0) server_gone();
    if (code != 220) give_up(2, "the server refused the session");
    code = command("EHLO client.example");
    if (code == 500 || code == 502) code = command("HELO client.example");  /* an old server */
    if (code < 0) server_gone();
    if (code != 250) give_up(1, "HELO/EHLO refused");
    code = command("MAIL FROM:<%s>", from);
    if (code < 0) server_gone();
    if (code != 250) give_up(1, "sender refused");
    int accepted = 0;
    for (int i = 0; i < nto; i++) {
        code = command("RCPT TO:<%s>", to[i]);
        if (code < 0) server_gone();
        if (code == 250 || code == 251) accepted++;  /* 251: will forward, RFC 5321 section 3.4 */
        else fprintf(stderr, "error: recipient %s refused: %s\n", to[i], last);
    }
    if (!accepted) {
        fprintf(stderr, "error: no recipient accepted\n");
        command("QUIT");
        return 1;
    }
    code = command("DATA");
    if (code < 0) server_gone();
    if (code != 354) give_up(1, "DATA refused");

    int ascii = is_ascii(body, body_size);
    char head[2048], date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", gmtime(&now));
    int n = snprintf(head, sizeof head, "From: <%s>\r\nTo: ", from);
    int ok = send_all(head, (size_t)n) == 0;
    for (int i = 0; ok && i < nto; i++) {
        n = snprintf(head, sizeof head, "%s<%s>", i ? ",\r\n " : "", to[i]);  /* folded, RFC 5322 2.2.3 */
        ok = send_all(head, (size_t)n) == 0;
    }
    ok = ok && send_all("\r\n", 2) == 0 && send_subject(subject) == 0;
    n = snprintf(head, sizeof head, "Date: %s\r\nMessage-ID: <%ld.%d@client.example>\r\n%s\r\n", date,
                 (long)now, (int)getpid(),
                 ascii ? "" : "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                              "Content-Transfer-Encoding: base64\r\n");
    ok = ok && send_all(head, (size_t)n) == 0;
    ok = ok && send_body(body, body_size, ascii) == 0 && send_all(".\r\n", 3) == 0;
    if (!ok) {
        gone = "the server closed the connection";
        server_gone();
    }
    code = reply();
    if (code < 0) server_gone();
    if (code != 250) give_up(1, "message refused");
    command("QUIT");
    return accepted == nto ? 0 : 3;
}
