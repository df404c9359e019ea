// execrace races the runtime exec check: one thread flips the path and
// argv between a harmless command and a denied one while the main thread
// calls execve on that memory. Each try is a fresh process.
//
//	execrace TRIES [SPIN]   in a git repository; stops early once a
//	                        branch "raced" exists, and prints what
//	                        happened. SPIN holds each state that many
//	                        loops (the check's read and the kernel's copy
//	                        are some microseconds apart); SPIN -1 never
//	                        flips: every exec is the harmless one.
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char path[32];
static char w0[16], w1[16], w2[16], w3[16];
static char *argv_[5] = {w0, w1, w2, w3, NULL};

static void set(const char *p, const char *a0, const char *a1, const char *a2, const char *a3) {
	strcpy(path, p);
	strcpy(w0, a0);
	strcpy(w1, a1);
	strcpy(w2, a2);
	strcpy(w3, a3);
}

static int spin;

// hold waits a random part of spin loops, so that the flips fall at every
// distance from the execve over the tries.
static void hold(void) {
	int n = spin > 0 ? rand() % spin : 0;
	for (volatile int i = 0; i < n; i++)
		;
}

static void *flip(void *unused) {
	(void)unused;
	for (;;) {
		set("/bin/true", "true", "status", "x", "y");
		hold();
		set("/usr/bin/git", "git", "checkout", "-b", "raced");
		hold();
	}
	return NULL;
}

int main(int argc, char **argv) {
	int tries = argc > 1 ? atoi(argv[1]) : 1000;
	spin = argc > 2 ? atoi(argv[2]) : 0;
	int ran = 0, refused = 0, killed = 0, other = 0, i;
	extern char **environ;
	for (i = 0; i < tries; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			pthread_t t;
			set("/bin/true", "true", "status", "x", "y");
			srand(getpid());
			if (spin >= 0) {
				pthread_create(&t, NULL, flip, NULL);
				usleep(rand() % 100);
			}
			execve(path, argv_, environ);
			_exit(126); // the check refused it
		}
		int st;
		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 126)
			refused++;
		else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
			killed++;
		else if (WIFEXITED(st))
			ran++;
		else
			other++;
		if (access(".git/refs/heads/raced", F_OK) == 0) {
			i++;
			break;
		}
	}
	int escaped = access(".git/refs/heads/raced", F_OK) == 0;
	printf("tries=%d ran=%d refused=%d killed=%d other=%d escaped=%d\n", i, ran, refused, killed, other, escaped);
	return escaped ? 1 : 0;
}
