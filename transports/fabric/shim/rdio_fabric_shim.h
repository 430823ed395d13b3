/*
 * Real, linkable functions for the libfabric calls that <rdma/fi_*.h> defines
 * as `static inline` wrappers around provider ops tables. Rust cannot call a
 * static inline function, so each one is re-exported here under an `rdio_`
 * prefix with the same arguments. Nothing else lives in this file: no logic,
 * no state.
 *
 * The inlines reach the provider through the ops tables of the objects they
 * are given, so this file references no libfabric symbol and the crate need
 * not link libfabric. The functions libfabric really exports (fi_getinfo,
 * fi_fabric, ...) are called through the table src/library.rs fills in
 * with dlsym instead.
 */
#ifndef RDIO_FABRIC_SHIM_H
#define RDIO_FABRIC_SHIM_H

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

/* The API version this crate is written against (FI_VERSION is a macro). */
uint32_t rdio_fi_version(void);

int rdio_fi_close(struct fid *fid);
int rdio_fi_domain(struct fid_fabric *fabric, struct fi_info *info, struct fid_domain **domain, void *context);
int rdio_fi_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr, struct fid_eq **eq, void *context);
int rdio_fi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq, void *context);
int rdio_fi_endpoint(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep, void *context);
int rdio_fi_passive_ep(struct fid_fabric *fabric, struct fi_info *info, struct fid_pep **pep, void *context);

int rdio_fi_ep_bind(struct fid_ep *ep, struct fid *bfid, uint64_t flags);
int rdio_fi_pep_bind(struct fid_pep *pep, struct fid *bfid, uint64_t flags);
int rdio_fi_enable(struct fid_ep *ep);
int rdio_fi_listen(struct fid_pep *pep);
int rdio_fi_getname(struct fid *fid, void *addr, size_t *addrlen);
int rdio_fi_connect(struct fid_ep *ep, const void *addr, const void *param, size_t paramlen);
int rdio_fi_accept(struct fid_ep *ep, const void *param, size_t paramlen);
int rdio_fi_reject(struct fid_pep *pep, fid_t handle, const void *param, size_t paramlen);
int rdio_fi_shutdown(struct fid_ep *ep, uint64_t flags);

int rdio_fi_mr_reg(struct fid_domain *domain, const void *buf, size_t len, uint64_t access,
                   uint64_t offset, uint64_t requested_key, uint64_t flags, struct fid_mr **mr,
                   void *context);
uint64_t rdio_fi_mr_key(struct fid_mr *mr);
void *rdio_fi_mr_desc(struct fid_mr *mr);

ssize_t rdio_fi_recv(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src_addr,
                     void *context);
ssize_t rdio_fi_send(struct fid_ep *ep, const void *buf, size_t len, void *desc,
                     fi_addr_t dest_addr, void *context);
ssize_t rdio_fi_sendmsg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags);
ssize_t rdio_fi_write(struct fid_ep *ep, const void *buf, size_t len, void *desc,
                      fi_addr_t dest_addr, uint64_t addr, uint64_t key, void *context);
ssize_t rdio_fi_writemsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags);

ssize_t rdio_fi_cq_read(struct fid_cq *cq, void *buf, size_t count);
ssize_t rdio_fi_cq_readerr(struct fid_cq *cq, struct fi_cq_err_entry *buf, uint64_t flags);
ssize_t rdio_fi_cq_sread(struct fid_cq *cq, void *buf, size_t count, const void *cond, int timeout);
const char *rdio_fi_cq_strerror(struct fid_cq *cq, int prov_errno, const void *err_data,
                                char *buf, size_t len);

ssize_t rdio_fi_eq_read(struct fid_eq *eq, uint32_t *event, void *buf, size_t len, uint64_t flags);
ssize_t rdio_fi_eq_readerr(struct fid_eq *eq, struct fi_eq_err_entry *buf, uint64_t flags);
ssize_t rdio_fi_eq_sread(struct fid_eq *eq, uint32_t *event, void *buf, size_t len, int timeout,
                         uint64_t flags);

#endif
