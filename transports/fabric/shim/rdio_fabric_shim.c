/* See rdio_fabric_shim.h: one-line forwarders to libfabric's static inlines. */
#include "rdio_fabric_shim.h"

uint32_t rdio_fi_version(void) { return FI_VERSION(1, 17); }

int rdio_fi_close(struct fid *fid) { return fi_close(fid); }
int rdio_fi_domain(struct fid_fabric *fabric, struct fi_info *info, struct fid_domain **domain, void *context)
{ return fi_domain(fabric, info, domain, context); }
int rdio_fi_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr, struct fid_eq **eq, void *context)
{ return fi_eq_open(fabric, attr, eq, context); }
int rdio_fi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq, void *context)
{ return fi_cq_open(domain, attr, cq, context); }
int rdio_fi_endpoint(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep, void *context)
{ return fi_endpoint(domain, info, ep, context); }
int rdio_fi_passive_ep(struct fid_fabric *fabric, struct fi_info *info, struct fid_pep **pep, void *context)
{ return fi_passive_ep(fabric, info, pep, context); }

int rdio_fi_ep_bind(struct fid_ep *ep, struct fid *bfid, uint64_t flags) { return fi_ep_bind(ep, bfid, flags); }
int rdio_fi_pep_bind(struct fid_pep *pep, struct fid *bfid, uint64_t flags) { return fi_pep_bind(pep, bfid, flags); }
int rdio_fi_enable(struct fid_ep *ep) { return fi_enable(ep); }
int rdio_fi_listen(struct fid_pep *pep) { return fi_listen(pep); }
int rdio_fi_getname(struct fid *fid, void *addr, size_t *addrlen) { return fi_getname(fid, addr, addrlen); }
int rdio_fi_connect(struct fid_ep *ep, const void *addr, const void *param, size_t paramlen)
{ return fi_connect(ep, addr, param, paramlen); }
int rdio_fi_accept(struct fid_ep *ep, const void *param, size_t paramlen) { return fi_accept(ep, param, paramlen); }
int rdio_fi_reject(struct fid_pep *pep, fid_t handle, const void *param, size_t paramlen)
{ return fi_reject(pep, handle, param, paramlen); }
int rdio_fi_shutdown(struct fid_ep *ep, uint64_t flags) { return fi_shutdown(ep, flags); }

int rdio_fi_mr_reg(struct fid_domain *domain, const void *buf, size_t len, uint64_t access,
                   uint64_t offset, uint64_t requested_key, uint64_t flags, struct fid_mr **mr,
                   void *context)
{ return fi_mr_reg(domain, buf, len, access, offset, requested_key, flags, mr, context); }
uint64_t rdio_fi_mr_key(struct fid_mr *mr) { return fi_mr_key(mr); }
void *rdio_fi_mr_desc(struct fid_mr *mr) { return fi_mr_desc(mr); }

ssize_t rdio_fi_recv(struct fid_ep *ep, void *buf, size_t len, void *desc, fi_addr_t src_addr, void *context)
{ return fi_recv(ep, buf, len, desc, src_addr, context); }
ssize_t rdio_fi_send(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest_addr, void *context)
{ return fi_send(ep, buf, len, desc, dest_addr, context); }
ssize_t rdio_fi_sendmsg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags)
{ return fi_sendmsg(ep, msg, flags); }
ssize_t rdio_fi_write(struct fid_ep *ep, const void *buf, size_t len, void *desc, fi_addr_t dest_addr,
                      uint64_t addr, uint64_t key, void *context)
{ return fi_write(ep, buf, len, desc, dest_addr, addr, key, context); }
ssize_t rdio_fi_writemsg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags)
{ return fi_writemsg(ep, msg, flags); }

ssize_t rdio_fi_cq_read(struct fid_cq *cq, void *buf, size_t count) { return fi_cq_read(cq, buf, count); }
ssize_t rdio_fi_cq_readerr(struct fid_cq *cq, struct fi_cq_err_entry *buf, uint64_t flags)
{ return fi_cq_readerr(cq, buf, flags); }
ssize_t rdio_fi_cq_sread(struct fid_cq *cq, void *buf, size_t count, const void *cond, int timeout)
{ return fi_cq_sread(cq, buf, count, cond, timeout); }
const char *rdio_fi_cq_strerror(struct fid_cq *cq, int prov_errno, const void *err_data, char *buf, size_t len)
{ return fi_cq_strerror(cq, prov_errno, err_data, buf, len); }

ssize_t rdio_fi_eq_read(struct fid_eq *eq, uint32_t *event, void *buf, size_t len, uint64_t flags)
{ return fi_eq_read(eq, event, buf, len, flags); }
ssize_t rdio_fi_eq_readerr(struct fid_eq *eq, struct fi_eq_err_entry *buf, uint64_t flags)
{ return fi_eq_readerr(eq, buf, flags); }
ssize_t rdio_fi_eq_sread(struct fid_eq *eq, uint32_t *event, void *buf, size_t len, int timeout, uint64_t flags)
{ return fi_eq_sread(eq, event, buf, len, timeout, flags); }
