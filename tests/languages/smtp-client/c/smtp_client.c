/* A correct smtp-client in C (the happy path of the contract): written for the grader's
 * language matrix.  Built by the Makefile into ./run. */
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int sock;
static FILE *in;

static void sendf(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(sock, buf, (size_t)n) != n) {
        fprintf(stderr, "write failed\n");
        exit(1);
    }
}

/* One whole reply: lines "250-..." continue, "250 ..." ends it (RFC 5321 section 4.2.1). */
static int reply(char *last, size_t size) {
    char line[1024];
    for (;;) {
        if (!fgets(line, sizeof line, in)) {
            fprintf(stderr, "the server closed the connection\n");
            exit(1);
        }
        if (strlen(line) < 4 || line[3] != '-') {
            if (last) snprintf(last, size, "%s", line);
            return atoi(line);
        }
    }
}

static void give_up(int status, const char *what, const char *text) {
    fprintf(stderr, "%s: %s", what, text);
    sendf("QUIT\r\n");
    reply(NULL, 0);
    exit(status);
}

int main(int argc, char **argv) {
    const char *server = NULL, *port = NULL, *from = NULL, *subject = "", *body = NULL;
    const char *to[64];
    int nto = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--server")) server = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = argv[i + 1];
        else if (!strcmp(argv[i], "--from")) from = argv[i + 1];
        else if (!strcmp(argv[i], "--to") && nto < 64) to[nto++] = argv[i + 1];
        else if (!strcmp(argv[i], "--subject")) subject = argv[i + 1];
        else if (!strcmp(argv[i], "--body-file")) body = argv[i + 1];
    }
    if (!server || !port || !from || !nto || !body) {
        fprintf(stderr, "usage: run --server H --port P --from A --to B --subject S --body-file F\n");
        return 2;
    }
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(server, port, &hints, &ai) != 0) {
        fprintf(stderr, "cannot resolve %s\n", server);
        return 2;
    }
    sock = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (sock < 0 || connect(sock, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "cannot connect to %s:%s\n", server, port);
        return 2;
    }
    in = fdopen(dup(sock), "r");
    char text[1024];
    if (reply(text, sizeof text) != 220) give_up(2, "greeting", text);
    sendf("EHLO client.example\r\n");
    int code = reply(text, sizeof text);
    if (code == 500 || code == 502) {
        sendf("HELO client.example\r\n");
        code = reply(text, sizeof text);
    }
    if (code != 250) give_up(1, "EHLO", text);
    sendf("MAIL FROM:<%s>\r\n", from);
    if (reply(text, sizeof text) != 250) give_up(1, "MAIL", text);
    int accepted = 0;
    for (int i = 0; i < nto; i++) {
        sendf("RCPT TO:<%s>\r\n", to[i]);
        code = reply(text, sizeof text);
        if (code == 250 || code == 251) accepted++;
        else fprintf(stderr, "recipient %s refused: %s", to[i], text);
    }
    if (!accepted) give_up(1, "no recipient accepted", "\n");
    sendf("DATA\r\n");
    if (reply(text, sizeof text) != 354) give_up(1, "DATA", text);
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", gmtime(&now));
    sendf("From: <%s>\r\nTo: ", from);
    for (int i = 0; i < nto; i++) sendf("%s<%s>", i ? ", " : "", to[i]);
    sendf("\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%ld.%d@client.example>\r\n\r\n", subject, date,
          (long)now, (int)getpid());
    FILE *f = fopen(body, "r");
    if (!f) give_up(1, "cannot read the body file", body);
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        sendf("%s%s\r\n", line[0] == '.' ? "." : "", line);  /* dot-stuffing, RFC 5321 4.5.2 */
    }
    fclose(f);
    sendf(".\r\n");
    if (reply(text, sizeof text) != 250) give_up(1, "message refused", text);
    sendf("QUIT\r\n");
    reply(NULL, 0);
    return accepted == nto ? 0 : 3;
}
