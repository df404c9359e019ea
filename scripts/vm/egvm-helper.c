/* egvm-helper: the VM scenario's probes, built static on the host by
 * scripts/vm/test.sh (gcc -static) so the image needs no compiler or python.
 *   egvm-helper alloc MB      touch MB MiB of memory (the memory limit kills it)
 *   egvm-helper fork N        fork N sleeping children; exit 3 and say how
 *                             many succeeded if a fork fails (pids limit)
 *   egvm-helper afs_syscall   an @obsolete syscall x86_64 does not implement:
 *                             ENOSYS normally, EPERM under SystemCallFilter=
 *   egvm-helper adjtimex      a read-only adjtimex (any user may): EPERM
 *                             only under ProtectClock=
 *   egvm-helper packet        socket(AF_PACKET): EAFNOSUPPORT only under
 *                             RestrictAddressFamilies= (EPERM unprivileged)
 *   egvm-helper serve PORT FILE
 *                             a TCP server on 127.0.0.1:PORT that answers
 *                             each connection "egvm-hello N" and keeps the
 *                             number of connections it accepted in FILE
 * The syscall probes print "NAME ok" or "NAME errno=NAME" and exit 0 either
 * way (the scenario compares the text).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e) {
	switch (e) {
	case EPERM: return "EPERM";
	case ENOSYS: return "ENOSYS";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case EACCES: return "EACCES";
	case EAGAIN: return "EAGAIN";
	case EINVAL: return "EINVAL";
	default: { static char b[32]; snprintf(b, sizeof b, "%d", e); return b; }
	}
}

static int report(const char *name, long rc) {
	if (rc < 0) printf("%s errno=%s\n", name, ename(errno));
	else printf("%s ok\n", name);
	return 0;
}

static int serve(int port, const char *file) {
	int one = 1, n = 0, s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0) {
		perror("serve");
		return 1;
	}
	FILE *f0 = fopen(file, "w"); /* "0": listening */
	if (f0) { fputs("0\n", f0); fclose(f0); }
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) continue;
		FILE *f = fopen(file, "w");
		if (f) { fprintf(f, "%d\n", ++n); fclose(f); }
		dprintf(c, "egvm-hello %d\n", n);
		close(c);
	}
}

int main(int argc, char **argv) {
	if (argc < 2) { fprintf(stderr, "usage: egvm-helper alloc MB|fork N|afs_syscall|adjtimex|packet\n"); return 2; }
	const char *cmd = argv[1];
	if (!strcmp(cmd, "alloc") && argc == 3) {
		long mb = atol(argv[2]);
		for (long i = 0; i < mb; i++) {
			char *p = malloc(1 << 20);
			if (!p) { printf("alloc: malloc failed at %ld MiB\n", i); return 1; }
			memset(p, 0x5a, 1 << 20);
		}
		printf("alloc: touched %ld MiB\n", mb);
		return 0;
	}
	if (!strcmp(cmd, "serve") && argc == 4) return serve(atoi(argv[2]), argv[3]);
	if (!strcmp(cmd, "fork") && argc == 3) {
		int n = atoi(argv[2]), made = 0, err = 0;
		pid_t *kids = calloc(n, sizeof *kids);
		for (int i = 0; i < n; i++) {
			pid_t p = fork();
			if (p == 0) { sleep(30); _exit(0); }
			if (p < 0) { err = errno; break; }
			kids[made++] = p;
		}
		for (int i = 0; i < made; i++) kill(kids[i], SIGKILL);
		for (int i = 0; i < made; i++) waitpid(kids[i], NULL, 0);
		if (err) { printf("fork: %d of %d, then errno=%s\n", made, n, ename(err)); return 3; }
		printf("fork: %d of %d\n", made, n);
		return 0;
	}
	if (!strcmp(cmd, "afs_syscall")) return report(cmd, syscall(SYS_afs_syscall, 0, 0, 0, 0));
	if (!strcmp(cmd, "adjtimex")) { struct timex t = {0}; return report(cmd, adjtimex(&t)); }
	if (!strcmp(cmd, "packet")) return report(cmd, socket(AF_PACKET, SOCK_RAW, 0));
	fprintf(stderr, "egvm-helper: unknown command %s\n", cmd);
	return 2;
}
