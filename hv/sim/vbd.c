/*
 * The simulated host's block backend (after Linux xen-blkback): serves a
 * raw disk image file (real pread/pwrite) on a blkif ring (xen/io/blkif.h,
 * one page, native x86_64 ABI) in the device thread (dev.c).
 *
 * Everything in the shared ring is guest-controlled: req_prod is read once
 * per batch and rejected if it claims more requests than the ring holds
 * (RING_REQUEST_PROD_OVERFLOW, "bogus ring requests" in blkback); each
 * request is copied out of the ring before it is looked at
 * (RING_COPY_REQUEST), and its operation, segment count, sector range and
 * segment sectors are bounded before use. Data moves by grant copy
 * (pvm_sim_grant_copy_*), which checks each grant and marks written guest
 * pages dirty. A malformed request gets BLKIF_RSP_ERROR, as in blkback;
 * a garbage ring index or grant entry breaks the device (sim_dev_fatal).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv/sim/xenring.h"

#include "hv/sim/internal.h"

#define SECTOR 512u

static_assert(sizeof(struct blkif_request) == 112, "blkif request (x86_64)");
static_assert(sizeof(struct blkif_response) == 16, "blkif response");

int sim_vbd_open(struct sim_dev *v)
{
	char path[160], params[1100], mode[8];
	struct stat st;
	int rc;

	snprintf(path, sizeof(path), "%s/params", v->be_path);
	rc = xsc_read(&v->xs, path, params, sizeof(params));
	if (rc < 0) {
		pvm_err("sim: d%u vbd %u: %s: %s", v->domid, v->devid, path,
			strerror(-rc));
		return rc;
	}
	snprintf(path, sizeof(path), "%s/mode", v->be_path);
	rc = xsc_read(&v->xs, path, mode, sizeof(mode));
	v->readonly = rc < 0 || strcmp(mode, "w") != 0;
	/* O_NOFOLLOW: the toolstack resolved the path (realpath) and an
	 * incoming guest's was checked against storage-roots; a link that
	 * replaced its last component since then is refused, not followed. */
	v->disk_fd = open(params, (v->readonly ? O_RDONLY : O_RDWR) |
					  O_CLOEXEC | O_NOFOLLOW);
	if (v->disk_fd < 0 || fstat(v->disk_fd, &st) < 0) {
		rc = -errno;
		pvm_err("sim: d%u vbd %u: disk image %s: %s", v->domid,
			v->devid, params, strerror(errno));
		return rc;
	}
	v->sectors = (uint64_t)st.st_size / SECTOR;
	if (v->sectors == 0) {
		pvm_err("sim: d%u vbd %u: disk image %s is empty", v->domid,
			v->devid, params);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s/feature-flush-cache", v->be_path);
	xsc_write(&v->xs, path, "1");
	snprintf(path, sizeof(path), "%s/max-ring-page-order", v->be_path);
	xsc_write(&v->xs, path, "0");
	return 0;
}

void sim_vbd_close(struct sim_dev *v)
{
	if (v->disk_fd >= 0)
		close(v->disk_fd);
	v->disk_fd = -1;
}

/*
 * One read/write request: *@status BLKIF_RSP_OKAY or BLKIF_RSP_ERROR (a bad
 * request, or an I/O error) and 0, or a negative errno after
 * sim_dev_fatal / the guest being gone (no response then).
 */
static int rw(struct sim_dev *v, const struct blkif_request *req, int *status)
{
	struct pvm_hv *hv = &v->h->hv;
	bool write = req->operation == BLKIF_OP_WRITE;
	uint64_t sector = req->sector_number;
	uint8_t buf[PVM_PAGE_SIZE];
	unsigned int n = req->nr_segments;

	if (n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
		pvm_warn("sim: d%u vbd %u: bad number of segments %u",
			 v->domid, v->devid, n);
		goto bad;
	}
	if (write && v->readonly)
		goto bad;
	for (unsigned int i = 0; i < n; i++) {
		const struct blkif_request_segment *s = &req->seg[i];
		uint32_t off, len;
		ssize_t done;
		int rc;

		if (s->last_sect >= PVM_PAGE_SIZE / SECTOR ||
		    s->first_sect > s->last_sect) {
			pvm_warn("sim: d%u vbd %u: bad segment sectors %u-%u",
				 v->domid, v->devid, s->first_sect,
				 s->last_sect);
			goto bad;
		}
		off = s->first_sect * SECTOR;
		len = (uint32_t)(s->last_sect - s->first_sect + 1) * SECTOR;
		if (sector >= v->sectors ||
		    len / SECTOR > v->sectors - sector) {
			pvm_warn("sim: d%u vbd %u: access beyond the disk "
				 "(sector %llu)", v->domid, v->devid,
				 (unsigned long long)sector);
			goto bad;
		}
		if (write) {
			rc = pvm_sim_grant_copy_from(hv, 0, v->domid, s->gref,
						     off, buf, len);
			if (rc == 0) {
				done = pwrite(v->disk_fd, buf, len,
					      (off_t)(sector * SECTOR));
				if (done != (ssize_t)len)
					goto bad;
			}
		} else {
			done = pread(v->disk_fd, buf, len,
				     (off_t)(sector * SECTOR));
			if (done != (ssize_t)len)
				goto bad;
			rc = pvm_sim_grant_copy_to(hv, 0, v->domid, s->gref,
						   off, buf, len);
		}
		if (rc == -ESRCH) {
			v->gone = true;
			return rc;
		}
		if (rc < 0) {
			sim_dev_fatal(v, "grant ref %u of segment %u: %s",
				      s->gref, i, strerror(-rc));
			return rc;
		}
		sector += len / SECTOR;
	}
	*status = BLKIF_RSP_OKAY;
	return 0;
bad:
	*status = BLKIF_RSP_ERROR; /* the request, not the device */
	return 0;
}

/* The backend is being destroyed (a stalled request must not hold it). */
static bool stopping(struct sim_dev *v)
{
	bool stop;

	pthread_mutex_lock(&v->mu);
	stop = v->want == DEV_STOP;
	pthread_mutex_unlock(&v->mu);
	return stop;
}

int sim_vbd_process(struct sim_dev *v)
{
	struct sim_ring *r = &v->ring[0];
	blkif_sring_t *sring = r->page;
	blkif_back_ring_t br = {
		.rsp_prod_pvt = r->rsp_prod_pvt,
		.req_cons = r->req_cons,
		.nr_ents = __RING_SIZE(sring, PVM_PAGE_SIZE),
		.sring = sring,
	};
	int more, notify, rc = 0;

	do {
		RING_IDX rp = __atomic_load_n(&sring->req_prod, __ATOMIC_ACQUIRE);

		if (RING_REQUEST_PROD_OVERFLOW(&br, rp)) {
			sim_dev_fatal(v, "bogus ring requests: req_prod %u, "
					 "req_cons %u, ring of %u", rp,
				      br.req_cons, br.nr_ents);
			return -EPROTO;
		}
		while (br.req_cons != rp &&
		       !RING_REQUEST_CONS_OVERFLOW(&br, br.req_cons)) {
			struct blkif_request req;
			struct blkif_response *rsp;
			int status = BLKIF_RSP_ERROR;

			RING_COPY_REQUEST(&br, br.req_cons, &req);
			br.req_cons++;
			/* Fault knob (a stuck disk): the request is taken and
			 * hangs, as on a disk that stopped answering, until
			 * the node is cleared; nothing else runs meanwhile. */
			while (v->stall && !v->gone && !stopping(v)) {
				usleep(5000);
				sim_dev_read_stall(v);
			}
			switch (req.operation) {
			case BLKIF_OP_READ:
			case BLKIF_OP_WRITE:
				rc = rw(v, &req, &status);
				break;
			case BLKIF_OP_FLUSH_DISKCACHE:
				status = fdatasync(v->disk_fd) == 0 ?
						 BLKIF_RSP_OKAY :
						 BLKIF_RSP_ERROR;
				break;
			default:
				status = BLKIF_RSP_EOPNOTSUPP;
				break;
			}
			if (rc < 0)
				goto out; /* fatal or gone: no response */
			rsp = RING_GET_RESPONSE(&br, br.rsp_prod_pvt);
			rsp->id = req.id;
			rsp->operation = req.operation;
			rsp->status = (int16_t)status;
			br.rsp_prod_pvt++;
			__atomic_fetch_add(&v->served, 1, __ATOMIC_RELAXED);
		}
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, notify);
		if (notify)
			pvm_sim_evtchn_notify(&v->h->hv, 0, v->be_port);
		RING_FINAL_CHECK_FOR_REQUESTS(&br, more);
	} while (more);
out:
	/* responses and req_event went into the guest's page */
	sim_grant_mark_mapped(&v->h->hv, r->handle);
	r->req_cons = br.req_cons;
	r->rsp_prod_pvt = br.rsp_prod_pvt;
	return rc;
}
