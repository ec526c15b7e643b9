/*
 * The device model of an HVM domain around a save, as libxl drives it
 * (Xen 4.17: libxl_dom_save.c, libxl_dom_suspend.c, libxl_stream_write.c):
 *
 *   xen_dm_kind()          which device model serves the domain: libxl's
 *                          /libxl/<domid>/dm-version ("qemu_xen"), none for
 *                          PV and for PVH (/libxl/<domid>/type "pvh")
 *   xen_dm_logdirty()      QMP xen-set-global-dirty-log: QEMU logs the
 *                          guest pages its emulated devices write (libxen-
 *                          guest's switch_qemu_logdirty callback, HVM only)
 *   xen_dm_save()          after the guest suspended: QMP stop, add-fd (an
 *                          unlinked file of ours, passed with SCM_RIGHTS),
 *                          xen-save-devices-state into /dev/fdset/N,
 *                          remove-fd; the bytes read back
 *   xen_dm_write_records() the libxl records that carry it after the libxc
 *                          stream: EMULATOR_XENSTORE_DATA (QEMU's physmap
 *                          keys, when there are any) and EMULATOR_CONTEXT
 *
 * The restore needs nothing of ours: libxl_domain_create_restore reads the
 * records and starts QEMU on the saved state. `cont` (QEMU running again)
 * comes from libxl_domain_resume (a checkpoint, a failed save) or
 * libxl_domain_unpause (a restored domain).
 *
 * QMP is spoken on libxl's socket, /var/run/xen/qmp-libxl-<domid>, one
 * command at a time on a connection of our own (QEMU serves one client at
 * a time; libxl holds none between its operations). Every reply line is
 * bounded (XEN_QMP_LINE_MAX) and parsed only for its top-level keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hv/xen/internal.h"

/* libxl's QMP socket directory (tests point it elsewhere). */
const char *xen_qmp_dir = "/var/run/xen";

/* A reply line longer than this is refused (QEMU's are a few hundred). */
#define XEN_QMP_LINE_MAX (64u * 1024u)
/* QMP commands: libxl waits 10 s for log-dirty; the device-state save of
 * a nested TCG host takes a few seconds. */
#define XEN_QMP_TIMEOUT_MS 10000
#define XEN_QMP_SAVE_TIMEOUT_MS 60000
/* EMULATOR_XENSTORE_DATA: at most this many bytes of key/value pairs. */
#define XEN_DM_XS_MAX (64u * 1024u)

/* libxl stream records (docs/stream-format.md §2): little-endian
 * {type, length}, the body padded to 8; emulator bodies start with
 * {id, index}. */
#define XL_REC_EMULATOR_XENSTORE_DATA 2u
#define XL_REC_EMULATOR_CONTEXT 3u
#define XL_EMULATOR_QEMU_UPSTREAM 2u

int xen_dm_kind(struct xen_host *x, uint32_t domid, enum xen_dm *kind_out)
{
	char path[64];
	unsigned int len = 0;
	char *v;

	*kind_out = XEN_DM_NONE;
	/* libxl writes dm-version ("qemu_xen") for PVH domains too, which
	 * have no QEMU: its own type node says which is which (libxl's
	 * libxl__domain_type). Asking a PVH domain's absent QEMU for
	 * log-dirty failed every save of one on the nested hosts. */
	snprintf(path, sizeof(path), "/libxl/%u/type", domid);
	v = xs_read(x->xsh, XBT_NULL, path, &len);
	if (v) {
		bool pvh = len == 3 && !memcmp(v, "pvh", 3);

		free(v);
		if (pvh)
			return 0;
	}
	snprintf(path, sizeof(path), "/libxl/%u/dm-version", domid);
	v = xs_read(x->xsh, XBT_NULL, path, &len);
	if (!v)
		return errno == ENOENT || !errno ? 0 : xen_neg_errno();
	if (len == 8 && !memcmp(v, "qemu_xen", 8)) {
		*kind_out = XEN_DM_QEMU;
	} else {
		pvm_err("xen: domain %u: device model '%.*s' (%s) is not "
			"supported: only QEMU upstream (qemu_xen)", domid,
			(int)(len > 40 ? 40 : len), v, path);
		free(v);
		return -EOPNOTSUPP;
	}
	free(v);
	return 0;
}

/* ---- QMP ----------------------------------------------------------------- */

struct qmp {
	int fd;
	uint32_t domid;
	char *buf; /* XEN_QMP_LINE_MAX + 1 */
	size_t len; /* bytes in buf */
};

static void qmp_close(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	free(q->buf);
	q->buf = NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The next line QEMU sent (without its "\r\n", NUL-terminated in q->buf,
 * valid until the next call). -ETIMEDOUT, -EPIPE (QEMU closed), -E2BIG.
 */
static int qmp_line(struct qmp *q, int timeout_ms, char **line_out,
		    size_t *consumed)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	char *nl;

	for (;;) {
		nl = memchr(q->buf, '\n', q->len);
		if (nl) {
			*consumed = (size_t)(nl - q->buf) + 1;
			*nl = '\0';
			if (nl > q->buf && nl[-1] == '\r')
				nl[-1] = '\0';
			*line_out = q->buf;
			return 0;
		}
		if (q->len >= XEN_QMP_LINE_MAX)
			return -E2BIG;
		uint64_t now = now_ms();
		struct pollfd pf = { .fd = q->fd, .events = POLLIN };
		int pr;
		ssize_t n;

		if (now >= end)
			return -ETIMEDOUT;
		pr = poll(&pf, 1, (int)(end - now));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0)
			return -errno;
		if (pr == 0)
			return -ETIMEDOUT;
		n = read(q->fd, q->buf + q->len, XEN_QMP_LINE_MAX - q->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		q->len += (size_t)n;
	}
}

static void qmp_consume(struct qmp *q, size_t n)
{
	memmove(q->buf, q->buf + n, q->len - n);
	q->len -= n;
}

/* Skips one JSON value at *p (bounded by end). 0, or -EBADMSG. */
static int json_skip(const char **p, const char *end, unsigned depth)
{
	const char *s = *p;

	if (depth > 32)
		return -EBADMSG;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	if (s >= end)
		return -EBADMSG;
	if (*s == '"') {
		for (s++; s < end && *s != '"'; s++)
			if (*s == '\\' && ++s >= end)
				return -EBADMSG;
		if (s >= end)
			return -EBADMSG;
		*p = s + 1;
		return 0;
	}
	if (*s == '{' || *s == '[') {
		char close = *s == '{' ? '}' : ']';

		s++;
		for (;;) {
			while (s < end && (*s == ' ' || *s == ',' || *s == ':'))
				s++;
			if (s >= end)
				return -EBADMSG;
			if (*s == close) {
				*p = s + 1;
				return 0;
			}
			if (json_skip(&s, end, depth + 1))
				return -EBADMSG;
		}
	}
	while (s < end && *s != ',' && *s != '}' && *s != ']' && *s != ' ')
		s++;
	if (s == *p)
		return -EBADMSG;
	*p = s;
	return 0;
}

/*
 * The value of top-level key @key in JSON object @line: its span in
 * *@val / *@val_len. 1 found, 0 not there, -EBADMSG not an object.
 */
static int json_member(const char *line, const char *key, const char **val,
		       size_t *val_len)
{
	const char *p = line, *end = line + strlen(line), *k, *v;
	size_t klen = strlen(key), kspan;

	while (p < end && *p == ' ')
		p++;
	if (p >= end || *p != '{')
		return -EBADMSG;
	p++;
	for (;;) {
		while (p < end && (*p == ' ' || *p == ','))
			p++;
		if (p < end && *p == '}')
			return 0;
		if (p >= end || *p != '"')
			return -EBADMSG;
		k = p;
		if (json_skip(&p, end, 0))
			return -EBADMSG;
		kspan = (size_t)(p - k);
		while (p < end && *p == ' ')
			p++;
		if (p >= end || *p != ':')
			return -EBADMSG;
		p++;
		while (p < end && *p == ' ')
			p++;
		v = p;
		if (json_skip(&p, end, 0))
			return -EBADMSG;
		if (kspan == klen + 2 && !memcmp(k + 1, key, klen)) {
			*val = v;
			*val_len = (size_t)(p - v);
			return 1;
		}
	}
}

/*
 * Sends @cmd (one JSON object; with @pass_fd >= 0 that descriptor goes
 * along, SCM_RIGHTS) and waits for its answer, skipping events. On
 * success the "return" value, NUL-terminated, into @ret (if non-NULL,
 * cut at @ret_len - 1). -EIO with QEMU's error logged, -EBADMSG for a
 * line that is not a QMP answer, -ETIMEDOUT, -EPIPE.
 */
static int qmp_cmd(struct qmp *q, const char *what, const char *cmd,
		   int pass_fd, int timeout_ms, char *ret, size_t ret_len)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)cmd, .iov_len = strlen(cmd) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	const char *v;
	size_t vlen, used;
	char *line;
	int rc;

	if (pass_fd >= 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	while (iov.iov_len) {
		ssize_t n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			pvm_err("xen: domain %u: QMP %s: cannot send: %s",
				q->domid, what, strerror(-rc));
			return rc;
		}
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= (size_t)n;
		mh.msg_control = NULL; /* the fd went with the first bytes */
		mh.msg_controllen = 0;
	}
	for (;;) {
		rc = qmp_line(q, timeout_ms, &line, &used);
		if (rc) {
			pvm_err("xen: domain %u: QMP %s: no answer from the "
				"device model: %s", q->domid, what,
				rc == -E2BIG ? "a reply line too long" :
				rc == -EPIPE ? "it closed the connection" :
				strerror(-rc));
			return rc == -E2BIG ? -EBADMSG : rc;
		}
		rc = json_member(line, "return", &v, &vlen);
		if (rc == 1) {
			if (ret && ret_len) {
				if (vlen >= ret_len)
					vlen = ret_len - 1;
				memcpy(ret, v, vlen);
				ret[vlen] = '\0';
			}
			qmp_consume(q, used);
			return 0;
		}
		if (rc == 0 && json_member(line, "error", &v, &vlen) == 1) {
			pvm_err("xen: domain %u: QMP %s: the device model "
				"refused: %.*s", q->domid, what,
				(int)(vlen > 300 ? 300 : vlen), v);
			qmp_consume(q, used);
			return -EIO;
		}
		if (rc == 0 && json_member(line, "event", &v, &vlen) == 1) {
			qmp_consume(q, used); /* STOP, RESUME, ...: not ours */
			continue;
		}
		pvm_err("xen: domain %u: QMP %s: not a QMP answer: %.80s",
			q->domid, what, line);
		return -EBADMSG;
	}
}

/* Connects to the domain's QMP socket and leaves capabilities
 * negotiation done. */
static int qmp_open(struct qmp *q, uint32_t domid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *v;
	size_t vlen, used;
	char *line;
	int rc;

	q->domid = domid;
	q->len = 0;
	q->buf = malloc(XEN_QMP_LINE_MAX + 1);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!q->buf || q->fd < 0) {
		rc = q->buf ? -errno : -ENOMEM;
		goto fail;
	}
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path),
			     "%s/qmp-libxl-%u", xen_qmp_dir, domid) >=
	    sizeof(sa.sun_path)) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		rc = -errno;
		pvm_err("xen: domain %u: cannot reach its device model at %s: "
			"%s", domid, sa.sun_path, strerror(-rc));
		qmp_close(q);
		return rc;
	}
	/* The greeting: {"QMP": {...}} */
	rc = qmp_line(q, XEN_QMP_TIMEOUT_MS, &line, &used);
	if (rc || json_member(line, "QMP", &v, &vlen) != 1) {
		pvm_err("xen: domain %u: %s did not greet as QMP (%s)", domid,
			sa.sun_path, rc ? strerror(-rc) : "another protocol");
		qmp_close(q);
		return rc && rc != -E2BIG ? rc : -EBADMSG;
	}
	qmp_consume(q, used);
	rc = qmp_cmd(q, "qmp_capabilities",
		     "{\"execute\":\"qmp_capabilities\"}\r\n", -1,
		     XEN_QMP_TIMEOUT_MS, NULL, 0);
	if (rc) {
		qmp_close(q);
		return rc;
	}
	return 0;
fail:
	pvm_err("xen: domain %u: QMP: %s", domid, strerror(-rc));
	qmp_close(q);
	return rc;
}

int xen_dm_logdirty(struct xen_host *x, uint32_t domid, bool enable)
{
	struct qmp q = { .fd = -1 };
	int rc;

	(void)x;
	rc = qmp_open(&q, domid);
	if (!rc)
		rc = qmp_cmd(&q, "xen-set-global-dirty-log",
			     enable ? "{\"execute\":\"xen-set-global-dirty-log\","
				      "\"arguments\":{\"enable\":true}}\r\n" :
				      "{\"execute\":\"xen-set-global-dirty-log\","
				      "\"arguments\":{\"enable\":false}}\r\n",
			     -1, XEN_QMP_TIMEOUT_MS, NULL, 0);
	qmp_close(&q);
	return rc;
}

/*
 * A temporary file nobody else can open (unlinked at once): *@rfd_out to
 * read it back, *@wfd_out opened O_WRONLY for QEMU. QEMU 7.2 hands out a
 * /dev/fdset/N fd only if its access mode is the one asked for
 * (monitor_fdset_dup_fd_add), and xen-save-devices-state asks O_WRONLY:
 * mkstemp's O_RDWR fd was refused with "Unable to open /dev/fdset/0:
 * Permission denied" on the nested hosts (libxl opens it O_WRONLY too).
 */
static int tmp_file(int *rfd_out, int *wfd_out)
{
	static const char *const dirs[] = { "/var/lib/xen", "/tmp" };
	char path[64];
	int rc = -ENOENT;

	*rfd_out = *wfd_out = -1;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		int fd, wfd;

		snprintf(path, sizeof(path), "%s/pvmig-dm.XXXXXX", dirs[i]);
		fd = mkstemp(path);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		wfd = open(path, O_WRONLY | O_CLOEXEC);
		rc = wfd < 0 ? -errno : 0;
		unlink(path);
		if (rc) {
			close(fd);
			continue;
		}
		*rfd_out = fd;
		*wfd_out = wfd;
		return 0;
	}
	return rc;
}

/* @fd's whole content (at most XEN_DM_CONTEXT_MAX bytes) into *@out. */
static int read_back(uint32_t domid, int fd, struct pvm_buf *out)
{
	struct stat st;
	size_t off = 0;

	if (fstat(fd, &st))
		return -errno;
	if (st.st_size <= 0 || (uint64_t)st.st_size > XEN_DM_CONTEXT_MAX) {
		pvm_err("xen: domain %u: the device model saved %lld bytes "
			"(expected 1 to %u)", domid, (long long)st.st_size,
			XEN_DM_CONTEXT_MAX);
		return -EBADMSG;
	}
	pvm_buf_reset(out);
	pvm_buf_put_zeros(out, (size_t)st.st_size);
	if (out->err)
		return out->err;
	while (off < (size_t)st.st_size) {
		ssize_t n = pread(fd, out->data + off, (size_t)st.st_size - off,
				  (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		off += (size_t)n;
	}
	return 0;
}

int xen_dm_save(struct xen_host *x, uint32_t domid, bool live,
		struct pvm_buf *out)
{
	struct qmp q = { .fd = -1 };
	char ret[256], cmd[192];
	const char *v;
	size_t vlen;
	long fdset = -1;
	int fd, wfd, rc;

	(void)x;
	rc = tmp_file(&fd, &wfd);
	if (rc) {
		pvm_err("xen: domain %u: no temporary file for the device "
			"model's state: %s", domid, strerror(-rc));
		return rc;
	}
	rc = qmp_open(&q, domid);
	if (rc)
		goto out;
	/* libxl: stop first, so that no device changes state meanwhile. */
	rc = qmp_cmd(&q, "stop", "{\"execute\":\"stop\"}\r\n", -1,
		     XEN_QMP_TIMEOUT_MS, NULL, 0);
	if (rc)
		goto out;
	rc = qmp_cmd(&q, "add-fd", "{\"execute\":\"add-fd\"}\r\n", wfd,
		     XEN_QMP_TIMEOUT_MS, ret, sizeof(ret));
	if (rc)
		goto out;
	if (json_member(ret, "fdset-id", &v, &vlen) == 1) {
		char num[24];
		char *e;

		snprintf(num, sizeof(num), "%.*s", (int)vlen, v);
		fdset = strtol(num, &e, 10);
		if (*e || fdset < 0 || fdset > 1000000)
			fdset = -1;
	}
	if (fdset < 0) {
		pvm_err("xen: domain %u: QMP add-fd answered no fdset-id: "
			"%.80s", domid, ret);
		rc = -EBADMSG;
		goto out;
	}
	/* live: for a migration (QEMU lets go of its images; `cont` takes
	 * them back), as libxl passes it. */
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\":\"xen-save-devices-state\",\"arguments\":"
		 "{\"filename\":\"/dev/fdset/%ld\",\"live\":%s}}\r\n",
		 fdset, live ? "true" : "false");
	rc = qmp_cmd(&q, "xen-save-devices-state", cmd, -1,
		     XEN_QMP_SAVE_TIMEOUT_MS, NULL, 0);
	if (rc)
		goto out; /* closing the monitor lets QEMU drop the fdset */
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\":\"remove-fd\",\"arguments\":"
		 "{\"fdset-id\":%ld}}\r\n", fdset);
	rc = qmp_cmd(&q, "remove-fd", cmd, -1, XEN_QMP_TIMEOUT_MS, NULL, 0);
	if (!rc)
		rc = read_back(domid, fd, out);
out:
	qmp_close(&q);
	close(wfd);
	close(fd);
	return rc;
}

/* ---- the libxl records ---------------------------------------------------- */

static int write_record(int fd, uint32_t type, const void *body, size_t len)
{
	static const uint8_t zero[8];
	uint8_t h[16];
	uint32_t rlen = (uint32_t)(len + 8);
	int rc;

	pvm_put_le32(h, type);
	pvm_put_le32(h + 4, rlen);
	pvm_put_le32(h + 8, XL_EMULATOR_QEMU_UPSTREAM);
	pvm_put_le32(h + 12, 0); /* index */
	rc = pvm_write_all(fd, h, sizeof(h));
	if (!rc && len)
		rc = pvm_write_all(fd, body, len);
	if (!rc && (rlen & 7))
		rc = pvm_write_all(fd, zero, 8 - (rlen & 7));
	return rc;
}

/* QEMU's physmap keys under /local/domain/0/device-model/<domid>, as
 * libxl__save_emulator_xenstore_data: "physmap/<id>/<subkey>\0value\0"... */
static int physmap_data(struct xen_host *x, uint32_t domid,
			struct pvm_buf *out)
{
	static const char *const sub[] = { "start_addr", "size", "name" };
	char root[64], path[192];
	char **ents;
	unsigned int n = 0;
	int rc = 0;

	pvm_buf_reset(out);
	snprintf(root, sizeof(root), "/local/domain/0/device-model/%u",
		 domid);
	snprintf(path, sizeof(path), "%s/physmap", root);
	ents = xs_directory(x->xsh, XBT_NULL, path, &n);
	if (!ents)
		return 0; /* none: no record (libxl writes none either) */
	for (unsigned int i = 0; i < n && !rc; i++) {
		for (size_t j = 0; j < sizeof(sub) / sizeof(sub[0]); j++) {
			char key[128];
			unsigned int vlen = 0;
			char *val;

			if ((size_t)snprintf(key, sizeof(key), "physmap/%s/%s",
					     ents[i], sub[j]) >= sizeof(key)) {
				rc = -ENAMETOOLONG;
				break;
			}
			snprintf(path, sizeof(path), "%s/%s", root, key);
			val = xs_read(x->xsh, XBT_NULL, path, &vlen);
			if (!val) {
				rc = xen_neg_errno();
				break;
			}
			if (memchr(val, '\0', vlen)) {
				free(val);
				rc = -EBADMSG;
				break;
			}
			pvm_buf_put_bytes(out, key, strlen(key) + 1);
			pvm_buf_put_bytes(out, val, vlen);
			pvm_buf_put_u8(out, 0);
			free(val);
			if ((rc = out->err))
				break;
		}
	}
	free(ents);
	if (rc)
		pvm_err("xen: domain %u: cannot read the device model's "
			"physmap keys (%s): %s", domid, root, strerror(-rc));
	return rc;
}

int xen_dm_write_records(struct xen_host *x, uint32_t domid, int fd,
			 const struct pvm_buf *context)
{
	struct pvm_buf xs;
	int rc;

	pvm_buf_init(&xs, XEN_DM_XS_MAX);
	rc = physmap_data(x, domid, &xs);
	if (!rc && xs.len)
		rc = write_record(fd, XL_REC_EMULATOR_XENSTORE_DATA, xs.data,
				  xs.len);
	if (!rc)
		rc = write_record(fd, XL_REC_EMULATOR_CONTEXT, context->data,
				  context->len);
	pvm_buf_dispose(&xs);
	return rc;
}
