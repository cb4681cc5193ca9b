/*
 * pktagent: the board side of `bmc-hil pkt --target board`.
 *
 * It runs a packetdrill-syntax script's syscalls on the board, one request line at a
 * time on stdin (the serial console or an SSH channel), and answers each on stdout.
 * The harness plays the script's remote end on its own wire; this program only makes
 * the calls, at the time it is told, and says when it made them on the board's
 * CLOCK_MONOTONIC, so the harness can anchor the segments that follow.
 *
 * Requests:   <id> time
 *             <id> mark <ipv4> <port>
 *             <id> call <at_ns> <slot> <syscall> <args...>    at_ns 0: now
 *             <id> closeall <slot>
 *             <id> quit
 * Answers:    = <id> <fields...>     (only lines starting "= " are answers)
 *   time      = <id> <now_ns>
 *   mark      = <id> <sent_ns>   a UDP datagram "pktagent mark <id>" to <ipv4>:<port>
 *             (a broadcast address, so no neighbour resolution delays it), sent at
 *             sent_ns: where the harness sees it on its wire ties the two clocks
 *   call      = <id> <ret> <errno> <value|-> <start_ns> <end_ns>
 *   other     = <id> 0
 *   bad line  = <id> ERR <what was wrong>
 * Arguments are decimal integers (addresses as dotted quads); the harness resolves the
 * script's names (SOCK_STREAM, TCP_MAXSEG, ...) to Linux's numbers.
 *
 * Slots: several scripts may run at once, each in its own slot (0 to SLOTS - 1) with its
 * own file descriptor numbers, handed out as the kernel hands them out to a process
 * (alloc_fd: the lowest free, from 3), so each script sees the fds it was written for.
 * The first argument of every call but socket() is a slot fd. Each slot has its own
 * thread: a call sleeping until its time holds up only its own slot's later requests.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define AGENT_PROTOCOL 2
#define SLOTS 16
#define SLOT_FDS 256
#define MAX_ARGS 8
#define IO_MAX (1 << 20)

static char iobuf[IO_MAX];		/* what read() and recv() fill */
static const char zeros[IO_MAX];	/* what write() and send() send: zero bytes, as the model does */
static int fdmap[SLOTS][SLOT_FDS];	/* slot fd -> the agent's fd, -1: free */
static struct termios saved_tty;
static int tty_saved;

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void answer(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* one write per answer, so a kernel message cannot land inside it on a pipe */
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, line, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			exit(3);
		memmove(line, line + w, n - w);
		n -= w;
	}
}

static void tty_restore(void)
{
	if (tty_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
}

/* Ctrl-C on the console (the harness's way out of a call that blocks for good): give
 * the shell its echo back before going. */
static void on_sigint(int sig)
{
	(void)sig;
	tty_restore();
	_exit(130);
}

/* No echo: the harness reads only the answers. Canonical mode stays, so a read()
 * returns one whole request line. */
static void tty_quiet(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) != 0)
		return;
	tty_saved = 1;
	t = saved_tty;
	t.c_lflag &= ~(ECHO | ECHONL | ECHOE | ECHOK);
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
	atexit(tty_restore);
}

static int parse_long(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 0);
	return errno == 0 && end != s && *end == '\0';
}

static int parse_addr(const char *ip, const char *port, struct sockaddr_in *sin)
{
	long long p;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	if (!parse_long(port, &p) || p < 0 || p > 65535)
		return 0;
	sin->sin_port = htons((unsigned short)p);
	return inet_pton(AF_INET, ip, &sin->sin_addr) == 1;
}

struct outcome {
	long long ret;
	int err;
	int has_value;
	long long value;
};

static int slot_fd_of(int slot, long long sfd)
{
	if (sfd < 0 || sfd >= SLOT_FDS)
		return -1;	/* a call on it fails with EBADF, as on a process */
	return fdmap[slot][sfd];
}

static long long slot_fd_new(int slot, int fd)
{
	for (int i = 3; i < SLOT_FDS; i++)
		if (fdmap[slot][i] < 0) {
			fdmap[slot][i] = fd;
			return i;
		}
	close(fd);
	errno = EMFILE;
	return -1;
}

static void slot_close_all(int slot)
{
	for (int i = 0; i < SLOT_FDS; i++)
		if (fdmap[slot][i] >= 0) {
			close(fdmap[slot][i]);
			fdmap[slot][i] = -1;
		}
}

/* Run one syscall; returns 0 when the request itself was bad (wrong name or args). */
static int run_call(int slot, const char *name, int argc, char **argv, struct outcome *o, const char **why)
{
	long long a[MAX_ARGS] = {0};
	struct sockaddr_in sin;
	int i, v;

	for (i = 0; i < argc && i < MAX_ARGS; i++)
		if (strchr(argv[i], '.') == NULL && !parse_long(argv[i], &a[i])) {
			*why = "an argument is not a number";
			return 0;
		}
	if (strcmp(name, "socket") && argc > 0)
		a[0] = slot_fd_of(slot, a[0]);
	errno = 0;
	o->has_value = 0;
#define NEED(n) do { if (argc != (n)) { *why = "wrong number of arguments"; return 0; } } while (0)
	if (!strcmp(name, "socket")) {
		NEED(3);
		o->ret = socket((int)a[0], (int)a[1], (int)a[2]);
	} else if (!strcmp(name, "bind") || !strcmp(name, "connect")) {
		NEED(3);
		if (!parse_addr(argv[1], argv[2], &sin)) {
			*why = "bad address or port";
			return 0;
		}
		if (name[0] == 'b')
			o->ret = bind((int)a[0], (struct sockaddr *)&sin, sizeof(sin));
		else
			o->ret = connect((int)a[0], (struct sockaddr *)&sin, sizeof(sin));
	} else if (!strcmp(name, "listen")) {
		NEED(2);
		o->ret = listen((int)a[0], (int)a[1]);
	} else if (!strcmp(name, "accept")) {
		NEED(1);
		o->ret = accept((int)a[0], NULL, NULL);
	} else if (!strcmp(name, "read") || !strcmp(name, "recv") || !strcmp(name, "write") || !strcmp(name, "send")) {
		int flags = argc == 3 ? (int)a[2] : 0;

		if (argc != 2 && argc != 3) {
			*why = "wrong number of arguments";
			return 0;
		}
		if (a[1] < 0 || a[1] > IO_MAX) {
			*why = "count out of range";
			return 0;
		}
		if (name[0] == 'r')
			o->ret = recv((int)a[0], iobuf, (size_t)a[1], flags);
		else
			o->ret = send((int)a[0], zeros, (size_t)a[1], flags);
	} else if (!strcmp(name, "close")) {
		NEED(1);
		o->ret = close((int)a[0]);
	} else if (!strcmp(name, "shutdown")) {
		NEED(2);
		o->ret = shutdown((int)a[0], (int)a[1]);
	} else if (!strcmp(name, "setsockopt")) {
		NEED(4);
		v = (int)a[3];
		o->ret = setsockopt((int)a[0], (int)a[1], (int)a[2], &v, sizeof(v));
	} else if (!strcmp(name, "getsockopt")) {
		socklen_t len = sizeof(v);

		NEED(3);
		v = 0;
		o->ret = getsockopt((int)a[0], (int)a[1], (int)a[2], &v, &len);
		o->has_value = o->ret == 0;
		o->value = v;
	} else if (!strcmp(name, "fcntl")) {
		if (argc != 2 && argc != 3) {
			*why = "wrong number of arguments";
			return 0;
		}
		o->ret = argc == 3 ? fcntl((int)a[0], (int)a[1], (long)a[2]) : fcntl((int)a[0], (int)a[1]);
	} else if (!strcmp(name, "ioctl")) {
		NEED(2);
		v = 0;
		o->ret = ioctl((int)a[0], (unsigned long)a[1], &v);
		o->has_value = o->ret == 0;
		o->value = v;
	} else {
		*why = "unknown syscall";
		return 0;
	}
#undef NEED
	o->err = o->ret < 0 ? errno : 0;
	if (o->ret >= 0 && (!strcmp(name, "socket") || !strcmp(name, "accept"))) {
		o->ret = slot_fd_new(slot, (int)o->ret);
		o->err = o->ret < 0 ? errno : 0;
	} else if (o->ret == 0 && !strcmp(name, "close")) {
		for (int i = 0; i < SLOT_FDS; i++)
			if (fdmap[slot][i] == (int)a[0])
				fdmap[slot][i] = -1;
	}
	return 1;
}

static void sleep_until(long long at)
{
	struct timespec ts = { .tv_sec = at / 1000000000LL, .tv_nsec = at % 1000000000LL };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void handle(char *line)
{
	char *tok[MAX_ARGS + 4];
	int n = 0;
	char *save = NULL, *t;
	long long id, at;

	for (t = strtok_r(line, " \t\r\n", &save); t && n < (int)(sizeof(tok) / sizeof(tok[0]));
	     t = strtok_r(NULL, " \t\r\n", &save))
		tok[n++] = t;
	if (n == 0)
		return;
	if (n < 2 || !parse_long(tok[0], &id)) {
		answer("= -1 ERR a request is '<id> <verb> ...'");
		return;
	}
	if (!strcmp(tok[1], "time")) {
		answer("= %lld %lld", id, now_ns());
	} else if (!strcmp(tok[1], "mark") && n == 4) {
		struct sockaddr_in sin;
		char payload[64];
		int one = 1, fd, len;
		long long sent;

		if (!parse_addr(tok[2], tok[3], &sin)) {
			answer("= %lld ERR mark: bad address or port", id);
			return;
		}
		fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) != 0) {
			answer("= %lld ERR mark: %s", id, strerror(errno));
			if (fd >= 0)
				close(fd);
			return;
		}
		len = snprintf(payload, sizeof(payload), "pktagent mark %lld", id);
		sent = now_ns();
		if (sendto(fd, payload, len, 0, (struct sockaddr *)&sin, sizeof(sin)) != len) {
			answer("= %lld ERR mark: %s", id, strerror(errno));
			close(fd);
			return;
		}
		close(fd);
		answer("= %lld %lld", id, sent);
	} else if (!strcmp(tok[1], "closeall") && n == 3) {
		long long slot;

		if (!parse_long(tok[2], &slot) || slot < 0 || slot >= SLOTS) {
			answer("= %lld ERR closeall: bad slot '%s'", id, tok[2]);
			return;
		}
		slot_close_all((int)slot);
		answer("= %lld 0", id);
	} else if (!strcmp(tok[1], "quit")) {
		answer("= %lld 0", id);
		exit(0);
	} else if (!strcmp(tok[1], "call") && n >= 5) {
		struct outcome o = {0};
		const char *why = "bad request";
		long long start, end, slot;

		if (!parse_long(tok[2], &at) || at < 0) {
			answer("= %lld ERR bad time '%s'", id, tok[2]);
			return;
		}
		if (!parse_long(tok[3], &slot) || slot < 0 || slot >= SLOTS) {
			answer("= %lld ERR bad slot '%s'", id, tok[3]);
			return;
		}
		if (at)
			sleep_until(at);
		start = now_ns();
		if (!run_call((int)slot, tok[4], n - 5, tok + 5, &o, &why)) {
			answer("= %lld ERR %s: %s", id, tok[4], why);
			return;
		}
		end = now_ns();
		if (o.has_value)
			answer("= %lld %lld %d %lld %lld %lld", id, o.ret, o.err, o.value, start, end);
		else
			answer("= %lld %lld %d - %lld %lld", id, o.ret, o.err, start, end);
	} else {
		answer("= %lld ERR unknown request '%s'", id, tok[1]);
	}
}

/* Each slot's requests, in order, for its thread. */
#define SLOT_QUEUE 64
struct slot_queue {
	pthread_mutex_t lock;
	pthread_cond_t more;
	char *line[SLOT_QUEUE];
	int head, count, started;
	pthread_t thread;
};
static struct slot_queue queues[SLOTS];

static void *slot_main(void *arg)
{
	struct slot_queue *q = arg;

	for (;;) {
		char *line;

		pthread_mutex_lock(&q->lock);
		while (!q->count)
			pthread_cond_wait(&q->more, &q->lock);
		line = q->line[q->head];
		q->head = (q->head + 1) % SLOT_QUEUE;
		q->count--;
		pthread_cond_signal(&q->more);
		pthread_mutex_unlock(&q->lock);
		handle(line);
		free(line);
	}
	return NULL;
}

/* A call or closeall goes to its slot's thread; 0 if the line names no valid slot (the
 * main thread then answers it, with the error). */
static int dispatch(const char *line)
{
	char verb[16];
	long long id, slot, at;
	struct slot_queue *q;
	int k = 0;

	if (sscanf(line, "%lld %15s %n", &id, verb, &k) < 2 || !k)
		return 0;
	if (!strcmp(verb, "call")) {
		if (sscanf(line + k, "%lld %lld", &at, &slot) != 2)
			return 0;
	} else if (!strcmp(verb, "closeall")) {
		if (sscanf(line + k, "%lld", &slot) != 1)
			return 0;
	} else {
		return 0;
	}
	if (slot < 0 || slot >= SLOTS)
		return 0;
	q = &queues[slot];
	pthread_mutex_lock(&q->lock);
	if (!q->started) {
		if (pthread_create(&q->thread, NULL, slot_main, q) != 0) {
			pthread_mutex_unlock(&q->lock);
			return 0;
		}
		q->started = 1;
	}
	while (q->count == SLOT_QUEUE)
		pthread_cond_wait(&q->more, &q->lock);
	q->line[(q->head + q->count) % SLOT_QUEUE] = strdup(line);
	q->count++;
	pthread_cond_signal(&q->more);
	pthread_mutex_unlock(&q->lock);
	return 1;
}

int main(void)
{
	static char line[1024];
	size_t len = 0;

	memset(fdmap, 0xff, sizeof(fdmap));	/* every slot fd free (-1) */
	for (int i = 0; i < SLOTS; i++) {
		pthread_mutex_init(&queues[i].lock, NULL);
		pthread_cond_init(&queues[i].more, NULL);
	}
	signal(SIGPIPE, SIG_IGN);	/* a write on a reset connection is EPIPE, as in packetdrill */
	tty_quiet();
	signal(SIGINT, on_sigint);
	answer("= 0 PKTAGENT %d", AGENT_PROTOCOL);
	for (;;) {
		ssize_t r = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
		char *nl;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		len += (size_t)r;
		line[len] = '\0';
		while ((nl = strpbrk(line, "\r\n")) != NULL) {
			*nl = '\0';
			if (!dispatch(line))
				handle(line);
			len -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, len + 1);
		}
		if (len == sizeof(line) - 1) {
			answer("= -1 ERR request line too long");
			len = 0;
		}
	}
}
