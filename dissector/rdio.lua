-- rdio.lua: Wireshark/tshark dissector for rdio captures (`rdio ... --capture
-- FILE.pcapng`, link type USER0). Format: docs/CAPTURE.md; messages and field
-- names: docs/PROTOCOL.md, "Wire format".
--
--   tshark -X lua_script:dissector/rdio.lua -r session.pcapng
--   wireshark -X lua_script:dissector/rdio.lua session.pcapng
--
-- or copy it to ~/.local/lib/wireshark/plugins/. Every record header,
-- side-channel (pipe) frame, RDMA message and status block is decoded;
-- requests and their completions are matched by request id; violations
-- (unknown opcodes or status codes, reserved bits or fields set, flags an
-- opcode does not allow, lengths that disagree, credits above the client's
-- level) are expert infos.

local cap = Proto("rdiocap", "rdio capture record")
local rdio = Proto("rdio", "rdio RDMA channel")
local pipe = Proto("rdiopipe", "rdio side channel")
local sb = Proto("rdiosb", "rdio status block")

local DIRECTIONS = { [0] = "out", [1] = "in" }
local KINDS = {
  [1] = "pipe frame", [2] = "send", [3] = "receive", [4] = "RDMA write",
  [5] = "immediate", [6] = "work request error", [7] = "disconnect",
}
local WC_ERRORS = {
  [1] = "remote access error", [2] = "local protection error",
  [3] = "receiver not ready", [4] = "local length error",
  [5] = "remote operation error", [6] = "flushed", [7] = "connection lost",
  [0xFE] = "unknown", [0xFF] = "other",
}
local STATUS = {
  [0] = "Success", [1] = "EndOfFile", [2] = "NotFound", [3] = "AccessDenied",
  [4] = "InvalidHandle", [5] = "InvalidParameter", [6] = "Cancelled",
  [7] = "TooLarge", [8] = "IoError", [9] = "NoCommonProvider",
  [10] = "VersionMismatch", [11] = "UnknownResumeKey", [12] = "AuthFailed",
  [13] = "ResourceExhausted", [14] = "NotSupported", [15] = "ProtocolError",
  [16] = "Closed", [17] = "TimedOut", [18] = "Shutdown",
  -- The server file system's errors (errno).
  [19] = "NoSpace", [20] = "QuotaExceeded", [21] = "ReadOnlyFileSystem",
  [22] = "PermissionDenied", [23] = "IsADirectory", [24] = "NotADirectory",
  [25] = "NotAFile", [26] = "FileTooLarge", [27] = "NameTooLong",
  -- Side-channel security.
  [28] = "Busy", [29] = "Unauthenticated", [30] = "ReadOnly",
  [31] = "TlsRequired", [32] = "TlsNotOffered", [33] = "NotAllowed",
  -- Terminate reason for an opcode the receiver does not know.
  [36] = "UnknownOpcode",
  -- Remote file operations.
  [41] = "AlreadyExists", [42] = "NotEmpty", [43] = "CrossDevice",
  -- Per-client limits of `rdio serve`.
  [51] = "TooManyOpenFiles", [52] = "IdleTimeout",
}
local OPCODES = {
  [0x01] = "AuthRequest", [0x02] = "AuthResponse", [0x03] = "StatusResponse",
  [0x10] = "CreditRequest", [0x11] = "CreditAck", [0x12] = "CreditGiveUp",
  [0x13] = "CreditResponse", [0x20] = "RegisterFile",
  [0x28] = "RegisterFileCompletion", [0x21] = "Read", [0x22] = "ReadV",
  [0x23] = "Write", [0x24] = "WriteV", [0x25] = "WriteData", [0x26] = "Cancel",
  [0x27] = "Close", [0x29] = "Completion", [0x2A] = "ReadBatch",
  [0x30] = "InterruptRequest",
  [0x31] = "InterruptResponse", [0x40] = "Keepalive",
  [0x41] = "KeepaliveResponse", [0x7F] = "Terminate",
}
-- Opcodes a client sends (their header credits are the client's level).
local CLIENT_OPS = {
  [0x01] = true, [0x11] = true, [0x12] = true, [0x20] = true, [0x21] = true,
  [0x22] = true, [0x23] = true, [0x24] = true, [0x25] = true, [0x26] = true,
  [0x27] = true, [0x2A] = true, [0x30] = true, [0x40] = true,
}
-- Flags each opcode allows: INTERRUPT 0x1 on the I/O requests, COLLAPSE 0x2
-- on WriteV only.
local ALLOWED_FLAGS = { [0x21] = 0x1, [0x22] = 0x1, [0x23] = 0x1, [0x24] = 0x3, [0x2A] = 0x1 }
local PIPE_OPCODES = {
  [0x01] = "ResumeKeyRequest", [0x02] = "ResumeKeyResponse",
  [0x03] = "OpenRequest", [0x04] = "OpenResponse",
  [0x05] = "NegotiateRequest", [0x06] = "NegotiateResponse",
  [0x07] = "StatRequest", [0x08] = "StatResponse",
  [0x20] = "ChecksumRequest", [0x21] = "ChecksumResponse",
  [0x10] = "AuthHello", [0x11] = "AuthChallenge", [0x12] = "AuthProof",
  [0x13] = "AuthResult", [0x1F] = "Refused", [0x30] = "Error",
  -- Remote file operations.
  [0x22] = "ListRequest", [0x23] = "ListResponse", [0x24] = "InfoRequest",
  [0x25] = "InfoResponse", [0x26] = "RemoveRequest", [0x27] = "MakeDirRequest",
  [0x28] = "RenameRequest", [0x29] = "SetAttrRequest", [0x2A] = "HashRequest",
  [0x2B] = "HashResponse", [0x2F] = "OpResult",
}
-- Pipe requests, and the request opcode each response answers.
local PIPE_REQUESTS = {
  [0x01] = true, [0x03] = true, [0x05] = true, [0x07] = true, [0x10] = true,
  [0x12] = true, [0x20] = true, [0x22] = true, [0x24] = true, [0x26] = true, [0x27] = true,
  [0x28] = true, [0x29] = true, [0x2A] = true,
}
-- (OpResult answers the request its opcode field names, as Error does.)
local PIPE_ANSWERS = {
  [0x02] = 0x01, [0x04] = 0x03, [0x06] = 0x05, [0x08] = 0x07, [0x11] = 0x10,
  [0x13] = 0x12, [0x21] = 0x20, [0x23] = 0x22, [0x25] = 0x24, [0x2B] = 0x2A,
}
local ENTRY_KINDS = { [0] = "file", [1] = "directory", [2] = "symlink", [3] = "other" }
-- Exact payload length of the fixed-size pipe messages.
local PIPE_FIXED = {
  [0x01] = 0, [0x02] = 16, [0x04] = 32, [0x08] = 32, [0x11] = 48, [0x12] = 32,
  [0x13] = 8, [0x1F] = 8, [0x30] = 8, [0x21] = 48, [0x25] = 40, [0x2B] = 48, [0x2F] = 8,
}
-- ChecksumRequest algorithms (open: an unknown one is answered NotSupported).
local CHECKSUM_ALGORITHMS = { [1] = "XXH3-128" }
-- Pipe Error codes (open: a code not listed here is not a violation).
local PIPE_ERRORS = {
  [1] = "BAD_MAGIC", [2] = "UNSUPPORTED_VERSION", [3] = "UNKNOWN_OPCODE",
  [4] = "RESERVED_NOT_ZERO", [5] = "BAD_LENGTH", [6] = "TOO_MANY",
  [7] = "BAD_PROVIDER_NAME", [8] = "INVALID_FIELD", [9] = "UNKNOWN_OPEN_FLAGS",
  [10] = "UNKNOWN_STATUS", [11] = "UNEXPECTED_MESSAGE",
  [12] = "RESOURCE_EXHAUSTED",
}
local MAX_PIPE_PAYLOAD = 2048
local OPEN_FLAGS_KNOWN = 0x1F

-- Capture record header.
local f = {}
f.version = ProtoField.uint8("rdiocap.version", "Record version")
f.direction = ProtoField.uint8("rdiocap.direction", "Direction", base.DEC, DIRECTIONS)
f.kind = ProtoField.uint8("rdiocap.kind", "Kind", base.DEC, KINDS)
f.flags = ProtoField.uint8("rdiocap.flags", "Flags", base.HEX)
f.flag_imm = ProtoField.bool("rdiocap.flags.immediate", "Immediate", 8, nil, 0x01)
f.flag_trunc = ProtoField.bool("rdiocap.flags.truncated", "Truncated", 8, nil, 0x02)
f.connection = ProtoField.uint32("rdiocap.connection", "Connection")
f.raddr = ProtoField.uint64("rdiocap.remote.addr", "Remote address", base.HEX)
f.rkey = ProtoField.uint32("rdiocap.remote.key", "Remote key", base.HEX)
f.rlen = ProtoField.uint32("rdiocap.remote.len", "Remote length")
f.imm = ProtoField.uint32("rdiocap.imm", "Immediate", base.HEX)
f.wc_error = ProtoField.uint32("rdiocap.error", "Work request error", base.DEC, WC_ERRORS)
f.orig_len = ProtoField.uint32("rdiocap.len", "Payload length")
cap.fields = {
  f.version, f.direction, f.kind, f.flags, f.flag_imm, f.flag_trunc,
  f.connection, f.raddr, f.rkey, f.rlen, f.imm, f.wc_error, f.orig_len,
}

-- RDMA channel messages (PROTOCOL.md names).
local r = {}
r.version = ProtoField.uint8("rdio.version", "Version")
r.opcode = ProtoField.uint8("rdio.opcode", "Opcode", base.HEX, OPCODES)
r.flags = ProtoField.uint16("rdio.flags", "Flags", base.HEX)
r.interrupt = ProtoField.bool("rdio.flags.interrupt", "INTERRUPT", 16, nil, 0x0001)
r.collapse = ProtoField.bool("rdio.flags.collapse", "COLLAPSE", 16, nil, 0x0002)
r.credits = ProtoField.uint16("rdio.credits", "Credits")
r.demand = ProtoField.uint16("rdio.demand", "Credit demand")
r.reserved = ProtoField.uint32("rdio.reserved", "Reserved", base.HEX)
r.request_id = ProtoField.uint32("rdio.request_id", "Request id", base.HEX)
r.length = ProtoField.uint32("rdio.length", "Length")
r.key = ProtoField.bytes("rdio.key", "Key")
r.status = ProtoField.uint32("rdio.status", "Status", base.DEC, STATUS)
r.keepalive_ms = ProtoField.uint32("rdio.keepalive_ms", "Keepalive (ms)")
r.delta = ProtoField.int32("rdio.delta", "Delta")
r.handle = ProtoField.uint32("rdio.handle", "Handle")
r.size = ProtoField.uint64("rdio.size", "Size")
r.offset = ProtoField.uint64("rdio.offset", "Offset", base.HEX)
r.desc_addr = ProtoField.uint64("rdio.desc.addr", "Address", base.HEX)
r.desc_key = ProtoField.uint32("rdio.desc.key", "Key", base.HEX)
r.desc_len = ProtoField.uint32("rdio.desc.len", "Length")
r.count = ProtoField.uint16("rdio.count", "Segments")
r.total_len = ProtoField.uint32("rdio.total_len", "Total length")
r.seg_len = ProtoField.uint32("rdio.segment.len", "Segment length")
r.batch_count = ProtoField.uint16("rdio.batch.count", "Reads")
r.batch_id = ProtoField.uint32("rdio.batch.request_id", "Read's request id", base.HEX)
r.data_offset = ProtoField.uint32("rdio.data_offset", "Data offset")
r.data = ProtoField.bytes("rdio.data", "Data")
r.data_len = ProtoField.uint32("rdio.data_len", "Data bytes")
r.target = ProtoField.uint32("rdio.target", "Target request id", base.HEX)
r.bytes = ProtoField.uint64("rdio.bytes", "Bytes")
r.reason = ProtoField.uint32("rdio.reason", "Reason", base.DEC, STATUS)
r.response_to = ProtoField.framenum("rdio.response_to", "Response to", base.NONE, frametype.REQUEST)
r.response_in = ProtoField.framenum("rdio.response_in", "Response in", base.NONE, frametype.RESPONSE)
r.write_data = ProtoField.uint32("rdio.write.data", "RDMA write of read data (bytes)")
r.write_for = ProtoField.framenum("rdio.write.request", "Read request", base.NONE, frametype.REQUEST)
rdio.fields = {}
for _, field in pairs(r) do table.insert(rdio.fields, field) end

-- Pipe frames.
local p = {}
p.magic = ProtoField.string("rdiopipe.magic", "Magic")
p.version = ProtoField.uint8("rdiopipe.version", "Version")
p.opcode = ProtoField.uint8("rdiopipe.opcode", "Opcode", base.HEX, PIPE_OPCODES)
p.reserved = ProtoField.uint32("rdiopipe.reserved", "Reserved", base.HEX)
p.length = ProtoField.uint32("rdiopipe.length", "Length")
p.key = ProtoField.bytes("rdiopipe.key", "Key")
p.flags = ProtoField.uint32("rdiopipe.flags", "Open flags", base.HEX)
p.read = ProtoField.bool("rdiopipe.flags.read", "READ", 32, nil, 0x1)
p.write = ProtoField.bool("rdiopipe.flags.write", "WRITE", 32, nil, 0x2)
p.create = ProtoField.bool("rdiopipe.flags.create", "CREATE", 32, nil, 0x4)
p.truncate = ProtoField.bool("rdiopipe.flags.truncate", "TRUNCATE", 32, nil, 0x8)
p.in_place = ProtoField.bool("rdiopipe.flags.in_place", "IN_PLACE", 32, nil, 0x10)
p.path_len = ProtoField.uint16("rdiopipe.path_len", "Path length")
p.path = ProtoField.string("rdiopipe.path", "Path")
p.status = ProtoField.uint32("rdiopipe.status", "Status", base.DEC, STATUS)
p.size = ProtoField.uint64("rdiopipe.size", "Size")
p.server_key = ProtoField.bytes("rdiopipe.server_key", "Server key")
p.min_version = ProtoField.uint16("rdiopipe.min_version", "Min version")
p.max_version = ProtoField.uint16("rdiopipe.max_version", "Max version")
p.credits_requested = ProtoField.uint16("rdiopipe.credits_requested", "Credits requested")
p.provider_count = ProtoField.uint8("rdiopipe.provider_count", "Providers")
p.max_send_size = ProtoField.uint32("rdiopipe.max_send_size", "Max send size")
p.max_io_size = ProtoField.uint32("rdiopipe.max_io_size", "Max I/O size")
p.provider = ProtoField.string("rdiopipe.provider", "Provider")
p.chosen_version = ProtoField.uint16("rdiopipe.version_chosen", "Chosen version")
p.credits = ProtoField.uint16("rdiopipe.credits", "Credits")
p.auth_key = ProtoField.bytes("rdiopipe.auth_key", "Auth key")
p.endpoint_len = ProtoField.uint16("rdiopipe.endpoint_len", "Endpoint length")
p.endpoint = ProtoField.string("rdiopipe.endpoint", "Endpoint")
p.capabilities = ProtoField.uint64("rdiopipe.capabilities", "Capabilities", base.HEX)
p.modified_ns = ProtoField.uint64("rdiopipe.modified_ns", "Modified (ns since the epoch)")
p.file_id = ProtoField.uint64("rdiopipe.file_id", "File id", base.HEX)
p.algorithm = ProtoField.uint8("rdiopipe.algorithm", "Checksum algorithm", base.DEC, CHECKSUM_ALGORITHMS)
p.checksum_length = ProtoField.uint64("rdiopipe.checksum_length", "Bytes hashed")
p.digest = ProtoField.bytes("rdiopipe.digest", "Digest")
p.name_len = ProtoField.uint8("rdiopipe.name_len", "Name length")
p.name = ProtoField.string("rdiopipe.name", "Name")
p.salt = ProtoField.bytes("rdiopipe.salt", "Salt")
p.nonce = ProtoField.bytes("rdiopipe.nonce", "Nonce")
p.proof = ProtoField.bytes("rdiopipe.proof", "Proof")
p.access = ProtoField.uint32("rdiopipe.access", "Access", base.HEX)
p.read_only = ProtoField.bool("rdiopipe.access.read_only", "READ_ONLY", 32, nil, 0x1)
p.error_code = ProtoField.uint32("rdiopipe.error.code", "Code", base.DEC, PIPE_ERRORS)
p.error_opcode = ProtoField.uint8("rdiopipe.error.opcode", "Opcode of the refused frame", base.HEX, PIPE_OPCODES)
p.response_to = ProtoField.framenum("rdiopipe.response_to", "Response to", base.NONE, frametype.REQUEST)
p.op_flags = ProtoField.uint16("rdiopipe.op_flags", "Flags", base.HEX)
p.after_len = ProtoField.uint8("rdiopipe.after_len", "After length")
p.after = ProtoField.string("rdiopipe.after", "After")
p.count = ProtoField.uint16("rdiopipe.count", "Entries")
p.list_end = ProtoField.bool("rdiopipe.list.end", "END", 16, nil, 0x1)
p.entry = ProtoField.none("rdiopipe.entry", "Entry")
p.kind = ProtoField.uint8("rdiopipe.kind", "Kind", base.DEC, ENTRY_KINDS)
p.mode = ProtoField.uint32("rdiopipe.mode", "Mode", base.OCT)
p.to_len = ProtoField.uint16("rdiopipe.to_len", "To length")
p.to = ProtoField.string("rdiopipe.to", "To")
p.offset = ProtoField.uint64("rdiopipe.offset", "Offset")
p.hash_length = ProtoField.uint64("rdiopipe.hash_length", "Length")
p.algorithm = ProtoField.uint8("rdiopipe.algorithm", "Algorithm", base.DEC, { [1] = "SHA-256" })
p.digest = ProtoField.bytes("rdiopipe.digest", "Digest")
p.op_opcode = ProtoField.uint8("rdiopipe.op_opcode", "Answers opcode", base.HEX, PIPE_OPCODES)
pipe.fields = {}
for _, field in pairs(p) do table.insert(pipe.fields, field) end

-- Status blocks.
local s = {}
s.request_id = ProtoField.uint32("rdiosb.request_id", "Request id", base.HEX)
s.status = ProtoField.uint32("rdiosb.status", "Status", base.DEC, STATUS)
s.bytes = ProtoField.uint64("rdiosb.bytes", "Bytes")
s.credits = ProtoField.uint16("rdiosb.credits", "Credits")
s.reserved = ProtoField.uint16("rdiosb.reserved", "Reserved", base.HEX)
s.valid = ProtoField.string("rdiosb.valid", "Valid")
s.response_to = ProtoField.framenum("rdiosb.response_to", "Completes", base.NONE, frametype.RESPONSE)
sb.fields = { s.request_id, s.status, s.bytes, s.credits, s.reserved, s.valid, s.response_to }

-- Expert infos.
local e = {}
e.unknown_opcode = ProtoExpert.new("rdio.expert.unknown_opcode", "Unknown opcode",
  expert.group.MALFORMED, expert.severity.ERROR)
e.unknown_status = ProtoExpert.new("rdio.expert.unknown_status", "Unknown status code",
  expert.group.MALFORMED, expert.severity.ERROR)
e.reserved = ProtoExpert.new("rdio.expert.reserved", "Reserved field or bits not zero",
  expert.group.MALFORMED, expert.severity.ERROR)
e.flags = ProtoExpert.new("rdio.expert.flags", "Flags not allowed on this opcode",
  expert.group.MALFORMED, expert.severity.ERROR)
e.version = ProtoExpert.new("rdio.expert.version", "Unsupported version",
  expert.group.MALFORMED, expert.severity.ERROR)
e.length = ProtoExpert.new("rdio.expert.length", "Length disagrees with the message",
  expert.group.MALFORMED, expert.severity.ERROR)
e.magic = ProtoExpert.new("rdio.expert.magic", "Pipe frame without the RDIO magic",
  expert.group.MALFORMED, expert.severity.ERROR)
e.credits = ProtoExpert.new("rdio.expert.credits", "Bad credits",
  expert.group.PROTOCOL, expert.severity.ERROR)
e.invalid = ProtoExpert.new("rdio.expert.invalid", "Value the protocol forbids",
  expert.group.PROTOCOL, expert.severity.ERROR)
e.truncated = ProtoExpert.new("rdio.expert.truncated", "Payload cut at the capture's snap length",
  expert.group.SEQUENCE, expert.severity.NOTE)
e.wc_error = ProtoExpert.new("rdio.expert.wc_error", "Work request failed",
  expert.group.RESPONSE_CODE, expert.severity.WARN)
e.flushed = ProtoExpert.new("rdio.expert.flushed", "Work request flushed (connection down)",
  expert.group.SEQUENCE, expert.severity.NOTE)
e.terminate = ProtoExpert.new("rdio.expert.terminate", "Connection terminated",
  expert.group.SEQUENCE, expert.severity.NOTE)
e.pipe_error = ProtoExpert.new("rdio.expert.pipe_error", "Server refused a pipe frame",
  expert.group.RESPONSE_CODE, expert.severity.WARN)
e.refused = ProtoExpert.new("rdio.expert.refused", "Server refused the client",
  expert.group.RESPONSE_CODE, expert.severity.WARN)
rdio.experts = {
  e.unknown_opcode, e.unknown_status, e.reserved, e.flags, e.version, e.length,
  e.magic, e.credits, e.invalid, e.truncated, e.wc_error, e.flushed, e.terminate,
  e.pipe_error, e.refused,
}

-- Per-capture state, rebuilt on every pass: requests by (connection,
-- request id), the client's credit level by connection, read destinations
-- by remote key and address.
--
-- Everything that depends on earlier frames is worked out on the first
-- pass (`pinfo.visited` false) and kept per frame in `frames`, so a second
-- pass (tshark -2, Wireshark's tree) shows the same matches and experts.
local requests, credit_level, read_dest, pipe_requests, answered, frames
local function reset()
  requests, credit_level, read_dest, pipe_requests, answered, frames = {}, {}, {}, {}, {}, {}
end
reset()
function cap.init() reset() end

local function state(pinfo)
  local st = frames[pinfo.number]
  if st == nil then
    st = {}
    frames[pinfo.number] = st
  end
  return st
end

local function key(conn, id) return tostring(conn) .. ":" .. tostring(id) end

local function check_status(tree, field, range)
  local item = tree:add_le(field, range)
  local code = range:le_uint()
  if STATUS[code] == nil then item:add_proto_expert_info(e.unknown_status) end
  return code
end

-- A count of segments or reads (`item`, its field): 1..16, and, when
-- the payload is `fixed` bytes and then `size` bytes per entry, its length
-- `have` agreeing with it (unless the frame is truncated).
local function check_count(item, count, have, truncated, fixed, size)
  if count == 0 or count > 16 then item:add_proto_expert_info(e.invalid) end
  if size and not truncated and have ~= fixed + size * count then
    item:add_proto_expert_info(e.length,
      string.format("payload is not %d + %d x count bytes", fixed, size))
  end
end

local function check_zero(tree, field, range)
  local item = tree:add_le(field, range)
  local zero = true
  for i = 0, range:len() - 1 do
    if range:range(i, 1):uint() ~= 0 then zero = false end
  end
  if not zero then item:add_proto_expert_info(e.reserved) end
end

local function descriptor(tree, tvb, off, label)
  local sub = tree:add(rdio, tvb(off, 16), label)
  sub:add_le(r.desc_addr, tvb(off, 8))
  sub:add_le(r.desc_key, tvb(off + 8, 4))
  sub:add_le(r.desc_len, tvb(off + 12, 4))
  return tvb(off, 8):le_uint64(), tvb(off + 8, 4):le_uint(), tvb(off + 12, 4):le_uint()
end

-- An RDMA write to `addr` under `key` is read data for the request in
-- this frame.
local function note_read_dest(pinfo, key, addr)
  if not pinfo.visited then
    read_dest[tostring(key) .. ":" .. tostring(addr)] = pinfo.number
  end
end

-- A read's `offset`, `dest` and `status` at `off` (a Read's payload after
-- its handle, or a ReadBatch's read after its id and handle).
local function dissect_read(tree, tvb, pinfo, off)
  tree:add_le(r.offset, tvb(off, 8))
  local addr, dkey, dlen = descriptor(tree, tvb, off + 8, "dest")
  descriptor(tree, tvb, off + 24, "status")
  if dlen == 0 then tree:add_proto_expert_info(e.invalid, "zero-length read") end
  note_read_dest(pinfo, dkey, addr)
end

local function remember_request(pinfo, conn, id)
  if not pinfo.visited then requests[key(conn, id)] = pinfo.number end
end

local function link_response(pinfo, tree, field, conn, id)
  local st = state(pinfo)
  if not pinfo.visited then
    st.response_to = requests[key(conn, id)]
    if st.response_to ~= nil then answered[st.response_to] = pinfo.number end
  end
  if st.response_to ~= nil then tree:add(field, st.response_to) end
end

-- One RDMA-channel message in `tvb` (payload cut if `truncated`).
local function dissect_message(tvb, pinfo, tree, conn, truncated)
  local t = tree:add(rdio, tvb(), "rdio message")
  if tvb:len() < 16 then
    t:add_proto_expert_info(e.length, "shorter than the 16-byte header")
    return
  end
  local version = tvb(0, 1):uint()
  local vitem = t:add(r.version, tvb(0, 1))
  if version ~= 1 then vitem:add_proto_expert_info(e.version) end
  local op = tvb(1, 1):uint()
  local oitem = t:add(r.opcode, tvb(1, 1))
  local name = OPCODES[op]
  if name == nil then
    oitem:add_proto_expert_info(e.unknown_opcode)
    name = string.format("opcode 0x%02x", op)
  end
  local flags = tvb(2, 2):le_uint()
  local fitem = t:add_le(r.flags, tvb(2, 2))
  fitem:add_le(r.interrupt, tvb(2, 2))
  fitem:add_le(r.collapse, tvb(2, 2))
  if bit.band(flags, bit.bnot(ALLOWED_FLAGS[op] or 0)) ~= 0 then
    fitem:add_proto_expert_info(e.flags)
  end
  local credits = tvb(4, 2):le_uint()
  local citem = t:add_le(r.credits, tvb(4, 2))
  -- A client request's credit demand (capability bit 1); zero in server
  -- messages, AuthRequest (0x01) and Terminate (0x7f).
  if CLIENT_OPS[op] and op ~= 0x01 and op ~= 0x7f then
    t:add_le(r.demand, tvb(6, 2))
  else
    check_zero(t, r.reserved, tvb(6, 2))
  end
  local id = tvb(8, 4):le_uint()
  t:add_le(r.request_id, tvb(8, 4))
  local length = tvb(12, 4):le_uint()
  local litem = t:add_le(r.length, tvb(12, 4))
  local have = tvb:len() - 16
  if (not truncated and have ~= length) or have > length then
    litem:add_proto_expert_info(e.length,
      string.format("declares %d payload bytes, carries %d", length, have))
  end
  t:append_text(string.format(": %s, request 0x%08x", name, id))
  pinfo.cols.info:append(string.format(" %s id=0x%08x cr=%d", name, id, credits))

  -- Credits: a client message states the level it holds after sending.
  local st = state(pinfo)
  if CLIENT_OPS[op] and not pinfo.visited then
    local level = credit_level[conn]
    if level ~= nil and op ~= 0x11 and op ~= 0x12 and credits > level then
      st.credits = string.format("client claims %d credits, its level is %d", credits, level)
    end
  end

  local function need(n)
    if have < n then
      if not truncated then
        t:add_proto_expert_info(e.length, string.format("payload shorter than %d bytes", n))
      end
      return false
    end
    return true
  end
  local b = 16
  if op == 0x01 or op == 0x20 then
    if need(16) then t:add(r.key, tvb(b, 16)) end
    if op == 0x20 then remember_request(pinfo, conn, id) end
  elseif op == 0x02 then
    if need(4) then check_status(t, r.status, tvb(b, 4)) end
  elseif op == 0x03 then
    if need(12) then
      check_status(t, r.status, tvb(b, 4))
      t:add_le(r.credits, tvb(b + 4, 2))
      check_zero(t, r.reserved, tvb(b + 6, 2))
      t:add_le(r.keepalive_ms, tvb(b + 8, 4))
      if not pinfo.visited then credit_level[conn] = tvb(b + 4, 2):le_uint() end
    end
  elseif op == 0x10 or op == 0x11 then
    if need(4) then
      local ditem = t:add_le(r.delta, tvb(b, 4))
      local delta = tvb(b, 4):le_int()
      if delta == 0 or (op == 0x11 and delta < 0) then
        ditem:add_proto_expert_info(e.invalid)
      end
      if op == 0x11 and not pinfo.visited and credit_level[conn] ~= nil then
        credit_level[conn] = credit_level[conn] + delta
        if credits ~= credit_level[conn] then
          st.credits = string.format(
            "after the ack the client holds %d, it claims %d", credit_level[conn], credits)
        end
      end
    end
  elseif op == 0x12 then
    if not pinfo.visited and credit_level[conn] ~= nil then
      credit_level[conn] = credit_level[conn] - 1
      if credits ~= credit_level[conn] then
        st.credits = string.format(
          "after giving up the client holds %d, it claims %d", credit_level[conn], credits)
      end
    end
  elseif op == 0x28 then
    if need(16) then
      check_status(t, r.status, tvb(b, 4))
      t:add_le(r.handle, tvb(b + 4, 4))
      t:add_le(r.size, tvb(b + 8, 8))
    end
    link_response(pinfo, t, r.response_to, conn, id)
  elseif op == 0x21 then
    if need(48) then
      t:add_le(r.handle, tvb(b, 4))
      check_zero(t, r.reserved, tvb(b + 4, 4))
      dissect_read(t, tvb, pinfo, b + 8)
    end
    remember_request(pinfo, conn, id)
  elseif op == 0x22 then
    if need(24) then
      t:add_le(r.handle, tvb(b, 4))
      local count = tvb(b + 4, 2):le_uint()
      local item = t:add_le(r.count, tvb(b + 4, 2))
      check_zero(t, r.reserved, tvb(b + 6, 2))
      descriptor(t, tvb, b + 8, "status")
      check_count(item, count, have, truncated, 24, 24)
      for i = 0, count - 1 do
        local off = b + 24 + 24 * i
        if off + 24 > tvb:len() then break end
        local seg = t:add(rdio, tvb(off, 24), string.format("segment %d", i))
        seg:add_le(r.offset, tvb(off, 8))
        local addr, dkey = descriptor(seg, tvb, off + 8, "dest")
        note_read_dest(pinfo, dkey, addr)
      end
    end
    remember_request(pinfo, conn, id)
  elseif op == 0x2A then
    -- ReadBatch (capability bit 0): the header's id is the batch's (the
    -- immediate of its last status block); each read has its own.
    if need(8) then
      local count = tvb(b, 2):le_uint()
      local item = t:add_le(r.batch_count, tvb(b, 2))
      check_zero(t, r.reserved, tvb(b + 2, 2))
      check_zero(t, r.reserved, tvb(b + 4, 4))
      check_count(item, count, have, truncated, 8, 48)
      for i = 0, count - 1 do
        local off = b + 8 + 48 * i
        if off + 48 > tvb:len() then break end
        local read = t:add(rdio, tvb(off, 48), string.format("read %d", i))
        local rid = tvb(off, 4):le_uint()
        read:add_le(r.batch_id, tvb(off, 4))
        read:add_le(r.handle, tvb(off + 4, 4))
        dissect_read(read, tvb, pinfo, off + 8)
        remember_request(pinfo, conn, rid)
      end
      pinfo.cols.info:append(string.format(" %d reads", count))
    end
  elseif op == 0x23 then
    if need(32) then
      t:add_le(r.handle, tvb(b, 4))
      local total = tvb(b + 4, 4):le_uint()
      local item = t:add_le(r.total_len, tvb(b + 4, 4))
      if total == 0 then item:add_proto_expert_info(e.invalid, "zero-length write") end
      t:add_le(r.offset, tvb(b + 8, 8))
      descriptor(t, tvb, b + 16, "status")
      local data = length - 32
      t:add(r.data_len, data)
      if data > total then item:add_proto_expert_info(e.length, "more data than total_len") end
      if tvb:len() > b + 32 then t:add(r.data, tvb(b + 32)) end
    end
    remember_request(pinfo, conn, id)
  elseif op == 0x24 then
    if need(32) then
      t:add_le(r.handle, tvb(b, 4))
      local count = tvb(b + 4, 2):le_uint()
      local item = t:add_le(r.count, tvb(b + 4, 2))
      check_zero(t, r.reserved, tvb(b + 6, 2))
      local total = tvb(b + 8, 4):le_uint()
      t:add_le(r.total_len, tvb(b + 8, 4))
      check_zero(t, r.reserved, tvb(b + 12, 4))
      descriptor(t, tvb, b + 16, "status")
      -- Data follows the segments: the length is checked by total_len.
      check_count(item, count, have, truncated)
      local sum, same = 0, nil
      for i = 0, count - 1 do
        local off = b + 32 + 16 * i
        if off + 16 > tvb:len() then break end
        local seg = t:add(rdio, tvb(off, 16), string.format("segment %d", i))
        seg:add_le(r.offset, tvb(off, 8))
        seg:add_le(r.seg_len, tvb(off + 8, 4))
        check_zero(seg, r.reserved, tvb(off + 12, 4))
        local len = tvb(off + 8, 4):le_uint()
        if len == 0 then seg:add_proto_expert_info(e.invalid, "zero-length segment") end
        sum = sum + len
        if same == nil then same = len elseif same ~= len then same = -1 end
      end
      local expected = sum
      if bit.band(flags, 0x2) ~= 0 then expected = same or 0 end
      if not truncated and expected ~= total then
        item:add_proto_expert_info(e.length, "total_len disagrees with the segments")
      end
      local data_at = b + 32 + 16 * count
      t:add(r.data_len, math.max(0, length - 32 - 16 * count))
      if tvb:len() > data_at then t:add(r.data, tvb(data_at)) end
    end
    remember_request(pinfo, conn, id)
  elseif op == 0x25 then
    if need(8) then
      t:add_le(r.data_offset, tvb(b, 4))
      check_zero(t, r.reserved, tvb(b + 4, 4))
      t:add(r.data_len, length - 8)
      if length <= 8 then t:add_proto_expert_info(e.invalid, "WriteData without data") end
      if tvb:len() > b + 8 then t:add(r.data, tvb(b + 8)) end
    end
  elseif op == 0x26 then
    if need(8) then
      t:add_le(r.target, tvb(b, 4))
      check_zero(t, r.reserved, tvb(b + 4, 4))
    end
    remember_request(pinfo, conn, id)
  elseif op == 0x27 then
    if need(8) then
      t:add_le(r.handle, tvb(b, 4))
      check_zero(t, r.reserved, tvb(b + 4, 4))
    end
    remember_request(pinfo, conn, id)
  elseif op == 0x29 then
    if need(16) then
      check_status(t, r.status, tvb(b, 4))
      check_zero(t, r.reserved, tvb(b + 4, 4))
      t:add_le(r.bytes, tvb(b + 8, 8))
    end
    link_response(pinfo, t, r.response_to, conn, id)
  elseif op == 0x7F then
    if need(8) then
      local reason = check_status(t, r.reason, tvb(b, 4))
      check_zero(t, r.reserved, tvb(b + 4, 4))
      t:add_proto_expert_info(e.terminate, "Terminate: " .. (STATUS[reason] or tostring(reason)))
    end
  end
  if st.credits ~= nil then citem:add_proto_expert_info(e.credits, st.credits) end
  if answered[pinfo.number] ~= nil then t:add(r.response_in, answered[pinfo.number]) end
end

-- A status block the server RDMA-wrote.
local function dissect_status_block(tvb, pinfo, tree, conn)
  local t = tree:add(sb, tvb(), "rdio status block")
  local id = tvb(0, 4):le_uint()
  t:add_le(s.request_id, tvb(0, 4))
  local code = check_status(t, s.status, tvb(4, 4))
  t:add_le(s.bytes, tvb(8, 8))
  t:add_le(s.credits, tvb(16, 2))
  check_zero(t, s.reserved, tvb(18, 2))
  t:add(s.valid, tvb(20, 4))
  local st = state(pinfo)
  if not pinfo.visited then
    st.completes = requests[key(conn, id)]
    if st.completes ~= nil then answered[st.completes] = pinfo.number end
  end
  if st.completes ~= nil then t:add(s.response_to, st.completes) end
  pinfo.cols.info:append(string.format(" StatusBlock id=0x%08x %s bytes=%s",
    id, STATUS[code] or tostring(code), tostring(tvb(8, 8):le_uint64())))
end

-- One pipe frame.
local function dissect_pipe(tvb, pinfo, tree, conn)
  local t = tree:add(pipe, tvb(), "rdio side-channel frame")
  if tvb:len() < 12 then
    t:add_proto_expert_info(e.length, "shorter than the 12-byte frame header")
    return
  end
  local mitem = t:add(p.magic, tvb(0, 4))
  if tvb(0, 4):string() ~= "RDIO" then mitem:add_proto_expert_info(e.magic) end
  local vitem = t:add(p.version, tvb(4, 1))
  if tvb(4, 1):uint() ~= 1 then vitem:add_proto_expert_info(e.version) end
  local op = tvb(5, 1):uint()
  local oitem = t:add(p.opcode, tvb(5, 1))
  local name = PIPE_OPCODES[op]
  if name == nil then
    oitem:add_proto_expert_info(e.unknown_opcode)
    name = string.format("pipe opcode 0x%02x", op)
  end
  check_zero(t, p.reserved, tvb(6, 2))
  local length = tvb(8, 4):le_uint()
  local litem = t:add_le(p.length, tvb(8, 4))
  local have = tvb:len() - 12
  if have ~= length then
    litem:add_proto_expert_info(e.length,
      string.format("declares %d payload bytes, carries %d", length, have))
  elseif length > MAX_PIPE_PAYLOAD then
    litem:add_proto_expert_info(e.length,
      string.format("payload above %d bytes", MAX_PIPE_PAYLOAD))
  end
  -- BadLength: a fixed-size message of another length, or a payload
  -- shorter than its opcode's fixed part.
  local fixed = PIPE_FIXED[op]
  if fixed ~= nil and length ~= fixed then
    litem:add_proto_expert_info(e.length,
      string.format("%s carries exactly %d payload bytes", name, fixed))
  end
  local function need(n)
    if have < n then
      if fixed == nil then
        litem:add_proto_expert_info(e.length,
          string.format("payload shorter than the %d-byte fixed part", n))
      end
      return false
    end
    return true
  end
  t:append_text(": " .. name)
  pinfo.cols.info:append(" " .. name)
  local b = 12
  -- Requests and responses alternate on a pipe: a response answers the
  -- connection's latest request of its kind (Hello -> Challenge, Proof ->
  -- Result, ...); an Error answers the request it refuses (by its opcode
  -- field), a Refused the latest request.
  local st = state(pinfo)
  if not pinfo.visited then
    local reqs = pipe_requests[conn]
    if reqs == nil then
      reqs = {}
      pipe_requests[conn] = reqs
    end
    if PIPE_REQUESTS[op] then
      reqs[op] = pinfo.number
      reqs.last = pinfo.number
    elseif PIPE_ANSWERS[op] ~= nil then
      st.pipe_response_to = reqs[PIPE_ANSWERS[op]]
    elseif op == 0x30 or op == 0x2F then
      local refused = have >= 5 and tvb(b + 4, 1):uint() or nil
      st.pipe_response_to = (refused and reqs[refused]) or reqs.last
    elseif op == 0x1F then
      st.pipe_response_to = reqs.last
    end
  end
  if st.pipe_response_to ~= nil then t:add(p.response_to, st.pipe_response_to) end
  local function path_at(off, plen)
    if plen == 0 then
      t:add_proto_expert_info(e.invalid, "empty path")
    elseif plen > 1024 then
      t:add_proto_expert_info(e.length, "path longer than 1024 bytes")
    end
    if have ~= off - b + plen then
      litem:add_proto_expert_info(e.length, "payload is not the fixed part + path_len bytes")
    end
    if plen > 0 and off + plen <= tvb:len() then
      local path = tvb(off, plen)
      t:add(p.path, path)
      for i = 0, plen - 1 do
        if path:range(i, 1):uint() == 0 then
          t:add_proto_expert_info(e.invalid, "NUL byte in the path")
          break
        end
      end
      pinfo.cols.info:append(" " .. path:string())
    end
  end
  if op == 0x02 and need(16) then
    t:add(p.key, tvb(b, 16))
  elseif op == 0x03 and need(8) then
    local fl = tvb(b, 4):le_uint()
    local fitem = t:add_le(p.flags, tvb(b, 4))
    fitem:add_le(p.read, tvb(b, 4))
    fitem:add_le(p.write, tvb(b, 4))
    fitem:add_le(p.create, tvb(b, 4))
    fitem:add_le(p.truncate, tvb(b, 4))
    fitem:add_le(p.in_place, tvb(b, 4))
    if bit.band(fl, bit.bnot(OPEN_FLAGS_KNOWN)) ~= 0 then
      fitem:add_proto_expert_info(e.reserved)
    elseif bit.band(fl, 0x3) == 0 or (bit.band(fl, 0x1C) ~= 0 and bit.band(fl, 0x2) == 0) then
      fitem:add_proto_expert_info(e.invalid, "bad open mode")
    end
    local plen = tvb(b + 4, 2):le_uint()
    t:add_le(p.path_len, tvb(b + 4, 2))
    check_zero(t, p.reserved, tvb(b + 6, 2))
    path_at(b + 8, plen)
  elseif op == 0x04 and need(32) then
    check_status(t, p.status, tvb(b, 4))
    check_zero(t, p.reserved, tvb(b + 4, 4))
    t:add(p.key, tvb(b + 8, 16))
    t:add_le(p.size, tvb(b + 24, 8))
  elseif op == 0x05 and need(40) then
    t:add(p.server_key, tvb(b, 16))
    local minv, maxv = tvb(b + 16, 2):le_uint(), tvb(b + 18, 2):le_uint()
    t:add_le(p.min_version, tvb(b + 16, 2))
    local vitem2 = t:add_le(p.max_version, tvb(b + 18, 2))
    if minv > maxv then vitem2:add_proto_expert_info(e.invalid, "min_version > max_version") end
    t:add_le(p.credits_requested, tvb(b + 20, 2))
    local count = tvb(b + 22, 1):uint()
    local citem = t:add(p.provider_count, tvb(b + 22, 1))
    if count > 8 then citem:add_proto_expert_info(e.length, "more than 8 providers") end
    check_zero(t, p.reserved, tvb(b + 23, 1))
    local sitem = t:add_le(p.max_send_size, tvb(b + 24, 4))
    if tvb(b + 24, 4):le_uint() < 512 then sitem:add_proto_expert_info(e.invalid, "max_send_size < 512") end
    t:add_le(p.max_io_size, tvb(b + 28, 4))
    t:add_le(p.capabilities, tvb(b + 32, 8))
    if have ~= 40 + 32 * count then
      litem:add_proto_expert_info(e.length, "payload is not 40 + 32 x provider_count bytes")
    end
    for i = 0, count - 1 do
      local off = b + 40 + 32 * i
      if off + 32 > tvb:len() then break end
      t:add(p.provider, tvb(off, 32), tvb(off, 32):stringz())
    end
  elseif op == 0x06 and need(44) then
    check_status(t, p.status, tvb(b, 4))
    t:add_le(p.chosen_version, tvb(b + 4, 2))
    t:add_le(p.credits, tvb(b + 6, 2))
    t:add_le(p.max_send_size, tvb(b + 8, 4))
    t:add_le(p.max_io_size, tvb(b + 12, 4))
    t:add(p.auth_key, tvb(b + 16, 16))
    local count = tvb(b + 32, 1):uint()
    local citem = t:add(p.provider_count, tvb(b + 32, 1))
    if count > 8 then citem:add_proto_expert_info(e.length, "more than 8 providers") end
    check_zero(t, p.reserved, tvb(b + 33, 1))
    local elen = tvb(b + 34, 2):le_uint()
    local eitem = t:add_le(p.endpoint_len, tvb(b + 34, 2))
    if elen > 128 then eitem:add_proto_expert_info(e.length, "endpoint longer than 128 bytes") end
    t:add_le(p.capabilities, tvb(b + 36, 8))
    if have ~= 44 + 32 * count + elen then
      litem:add_proto_expert_info(e.length,
        "payload is not 44 + 32 x provider_count + endpoint_len bytes")
    end
    local off = b + 44
    for _ = 1, count do
      if off + 32 > tvb:len() then break end
      t:add(p.provider, tvb(off, 32), tvb(off, 32):stringz())
      off = off + 32
    end
    if elen > 0 and off + elen <= tvb:len() then t:add(p.endpoint, tvb(off, elen)) end
  elseif op == 0x07 and need(4) then
    local plen = tvb(b, 2):le_uint()
    t:add_le(p.path_len, tvb(b, 2))
    check_zero(t, p.reserved, tvb(b + 2, 2))
    path_at(b + 4, plen)
  elseif op == 0x08 and need(32) then
    local code = check_status(t, p.status, tvb(b, 4))
    check_zero(t, p.reserved, tvb(b + 4, 4))
    t:add_le(p.size, tvb(b + 8, 8))
    t:add_le(p.modified_ns, tvb(b + 16, 8))
    t:add_le(p.file_id, tvb(b + 24, 8))
    pinfo.cols.info:append(" " .. (STATUS[code] or tostring(code)))
  elseif op == 0x20 and need(4) then
    local plen = tvb(b + 2, 2):le_uint()
    t:add(p.algorithm, tvb(b, 1))
    check_zero(t, p.reserved, tvb(b + 1, 1))
    t:add_le(p.path_len, tvb(b + 2, 2))
    path_at(b + 4, plen)
  elseif op == 0x21 and need(48) then
    local code = check_status(t, p.status, tvb(b, 4))
    t:add(p.algorithm, tvb(b + 4, 1))
    check_zero(t, p.reserved, tvb(b + 5, 3))
    t:add_le(p.checksum_length, tvb(b + 8, 8))
    t:add(p.digest, tvb(b + 16, 32))
    pinfo.cols.info:append(" " .. (STATUS[code] or tostring(code)))
  elseif op == 0x10 and need(4) then
    local nlen = tvb(b, 1):uint()
    local nitem = t:add(p.name_len, tvb(b, 1))
    check_zero(t, p.reserved, tvb(b + 1, 3))
    if have ~= 4 + nlen then
      litem:add_proto_expert_info(e.length, "payload is not 4 + name_len bytes")
    end
    if nlen == 0 or nlen > 64 then
      nitem:add_proto_expert_info(e.invalid, "name length not in 1..=64")
    end
    if nlen > 0 and b + 4 + nlen <= tvb:len() then
      local nm = tvb(b + 4, nlen)
      local item = t:add(p.name, nm)
      if not nm:raw():match("^[%w%._%-@]+$") then
        item:add_proto_expert_info(e.invalid, "name holds a byte outside letters, digits, . _ - @")
      end
      pinfo.cols.info:append(" " .. nm:string())
    end
  elseif op == 0x11 and need(48) then
    t:add(p.salt, tvb(b, 16))
    t:add(p.nonce, tvb(b + 16, 32))
  elseif op == 0x12 and need(32) then
    t:add(p.proof, tvb(b, 32))
  elseif op == 0x13 and need(8) then
    local code = check_status(t, p.status, tvb(b, 4))
    local access = tvb(b + 4, 4):le_uint()
    local aitem = t:add_le(p.access, tvb(b + 4, 4))
    aitem:add_le(p.read_only, tvb(b + 4, 4))
    if bit.band(access, bit.bnot(0x1)) ~= 0 then
      aitem:add_proto_expert_info(e.invalid, "access bits other than READ_ONLY")
    end
    pinfo.cols.info:append(" " .. (STATUS[code] or tostring(code)))
  elseif op == 0x1F and need(8) then
    local code = check_status(t, p.status, tvb(b, 4))
    check_zero(t, p.reserved, tvb(b + 4, 4))
    t:add_proto_expert_info(e.refused, "Refused: " .. (STATUS[code] or tostring(code)))
    pinfo.cols.info:append(" " .. (STATUS[code] or tostring(code)))
  elseif op == 0x22 and need(4) then
    local plen, alen = tvb(b, 2):le_uint(), tvb(b + 2, 1):uint()
    t:add_le(p.path_len, tvb(b, 2))
    t:add(p.after_len, tvb(b + 2, 1))
    check_zero(t, p.reserved, tvb(b + 3, 1))
    if have ~= 4 + plen + alen then
      litem:add_proto_expert_info(e.length, "payload is not 4 + path_len + after_len bytes")
    elseif plen > 0 then
      t:add(p.path, tvb(b + 4, plen))
      pinfo.cols.info:append(" " .. tvb(b + 4, plen):string())
      if alen > 0 then t:add(p.after, tvb(b + 4 + plen, alen)) end
    else
      t:add_proto_expert_info(e.invalid, "empty path")
    end
  elseif op == 0x23 and need(8) then
    local code = check_status(t, p.status, tvb(b, 4))
    local count = tvb(b + 4, 2):le_uint()
    t:add_le(p.count, tvb(b + 4, 2))
    local fl = tvb(b + 6, 2):le_uint()
    local fitem = t:add_le(p.op_flags, tvb(b + 6, 2))
    fitem:add_le(p.list_end, tvb(b + 6, 2))
    if bit.band(fl, bit.bnot(0x1)) ~= 0 then fitem:add_proto_expert_info(e.invalid, "flags other than END") end
    local off = b + 8
    for _ = 1, count do
      if off + 32 > tvb:len() then
        litem:add_proto_expert_info(e.length, "fewer entry bytes than count says")
        break
      end
      local nlen = tvb(off + 1, 1):uint()
      local item = t:add(p.entry, tvb(off, math.min(32 + nlen, tvb:len() - off)))
      item:add(p.kind, tvb(off, 1))
      item:add(p.name_len, tvb(off + 1, 1))
      item:add_le(p.mode, tvb(off + 4, 4))
      item:add_le(p.size, tvb(off + 8, 8))
      item:add_le(p.modified_ns, tvb(off + 16, 8))
      item:add_le(p.file_id, tvb(off + 24, 8))
      if nlen == 0 or off + 32 + nlen > tvb:len() then
        item:add_proto_expert_info(e.invalid, "bad entry name length")
        break
      end
      item:add(p.name, tvb(off + 32, nlen))
      item:append_text(": " .. tvb(off + 32, nlen):string())
      off = off + 32 + nlen
    end
    if off ~= tvb:len() then litem:add_proto_expert_info(e.length, "entries do not fill the payload") end
    pinfo.cols.info:append(string.format(" %s %d entries%s", STATUS[code] or tostring(code), count,
      bit.band(fl, 0x1) ~= 0 and " END" or ""))
  elseif op == 0x24 and need(4) then
    local plen = tvb(b, 2):le_uint()
    t:add_le(p.path_len, tvb(b, 2))
    check_zero(t, p.reserved, tvb(b + 2, 2))
    path_at(b + 4, plen)
  elseif op == 0x25 and need(40) then
    local code = check_status(t, p.status, tvb(b, 4))
    check_zero(t, p.reserved, tvb(b + 4, 4))
    t:add(p.kind, tvb(b + 8, 1))
    check_zero(t, p.name_len, tvb(b + 9, 1))
    t:add_le(p.mode, tvb(b + 12, 4))
    t:add_le(p.size, tvb(b + 16, 8))
    t:add_le(p.modified_ns, tvb(b + 24, 8))
    t:add_le(p.file_id, tvb(b + 32, 8))
    pinfo.cols.info:append(" " .. (STATUS[code] or tostring(code)) .. " " ..
      (ENTRY_KINDS[tvb(b + 8, 1):uint()] or "?"))
  elseif op == 0x26 and need(4) then
    local plen = tvb(b, 2):le_uint()
    t:add_le(p.path_len, tvb(b, 2))
    t:add_le(p.op_flags, tvb(b + 2, 2))
    path_at(b + 4, plen)
  elseif (op == 0x27 and need(8)) then
    local plen = tvb(b, 2):le_uint()
    t:add_le(p.path_len, tvb(b, 2))
    t:add_le(p.op_flags, tvb(b + 2, 2))
    local mitem = t:add_le(p.mode, tvb(b + 4, 4))
    if tvb(b + 4, 4):le_uint() > 511 then mitem:add_proto_expert_info(e.invalid, "mode above 0777") end
    path_at(b + 8, plen)
  elseif op == 0x28 and need(8) then
    local flen, tlen = tvb(b, 2):le_uint(), tvb(b + 2, 2):le_uint()
    t:add_le(p.path_len, tvb(b, 2))
    t:add_le(p.to_len, tvb(b + 2, 2))
    t:add_le(p.op_flags, tvb(b + 4, 2))
    check_zero(t, p.reserved, tvb(b + 6, 2))
    if have ~= 8 + flen + tlen or flen == 0 or tlen == 0 then
      litem:add_proto_expert_info(e.length, "payload is not 8 + from_len + to_len bytes")
    else
      t:add(p.path, tvb(b + 8, flen))
      t:add(p.to, tvb(b + 8 + flen, tlen))
      pinfo.cols.info:append(" " .. tvb(b + 8, flen):string() .. " -> " .. tvb(b + 8 + flen, tlen):string())
    end
  elseif op == 0x29 and need(16) then
    local plen = tvb(b, 2):le_uint()
    t:add_le(p.path_len, tvb(b, 2))
    t:add_le(p.op_flags, tvb(b + 2, 2))
    local mitem = t:add_le(p.mode, tvb(b + 4, 4))
    if tvb(b + 4, 4):le_uint() > 511 then mitem:add_proto_expert_info(e.invalid, "mode above 0777") end
    t:add_le(p.modified_ns, tvb(b + 8, 8))
    path_at(b + 16, plen)
  elseif op == 0x2A and need(20) then
    t:add_le(p.offset, tvb(b, 8))
    t:add_le(p.hash_length, tvb(b + 8, 8))
    local plen = tvb(b + 16, 2):le_uint()
    t:add_le(p.path_len, tvb(b + 16, 2))
    t:add(p.algorithm, tvb(b + 18, 1))
    check_zero(t, p.reserved, tvb(b + 19, 1))
    path_at(b + 20, plen)
  elseif op == 0x2B and need(48) then
    local code = check_status(t, p.status, tvb(b, 4))
    t:add(p.algorithm, tvb(b + 4, 1))
    check_zero(t, p.reserved, tvb(b + 5, 3))
    t:add_le(p.hash_length, tvb(b + 8, 8))
    t:add(p.digest, tvb(b + 16, 32))
    pinfo.cols.info:append(" " .. (STATUS[code] or tostring(code)))
  elseif op == 0x2F and need(8) then
    local code = check_status(t, p.status, tvb(b, 4))
    t:add(p.op_opcode, tvb(b + 4, 1))
    check_zero(t, p.reserved, tvb(b + 5, 3))
    pinfo.cols.info:append(string.format(" %s (opcode 0x%02x)", STATUS[code] or tostring(code),
      tvb(b + 4, 1):uint()))
  elseif op == 0x30 and need(8) then
    local code = tvb(b, 4):le_uint()
    t:add_le(p.error_code, tvb(b, 4))
    t:add(p.error_opcode, tvb(b + 4, 1))
    check_zero(t, p.reserved, tvb(b + 5, 3))
    local cname = PIPE_ERRORS[code] or string.format("code %d", code)
    t:add_proto_expert_info(e.pipe_error, "Error: " .. cname)
    pinfo.cols.info:append(string.format(" %s (opcode 0x%02x)", cname, tvb(b + 4, 1):uint()))
  end
end

function cap.dissector(tvb, pinfo, tree)
  if tvb:len() < 32 then return 0 end
  pinfo.cols.protocol = "rdio"
  local t = tree:add(cap, tvb(0, 32), "rdio capture record")
  t:add(f.version, tvb(0, 1))
  local dir = tvb(1, 1):uint()
  t:add(f.direction, tvb(1, 1))
  local kind = tvb(2, 1):uint()
  t:add(f.kind, tvb(2, 1))
  local flags = tvb(3, 1):uint()
  local fitem = t:add(f.flags, tvb(3, 1))
  fitem:add(f.flag_imm, tvb(3, 1))
  fitem:add(f.flag_trunc, tvb(3, 1))
  local conn = tvb(4, 4):le_uint()
  t:add_le(f.connection, tvb(4, 4))
  local truncated = bit.band(flags, 0x02) ~= 0
  if kind == 4 then
    t:add_le(f.raddr, tvb(8, 8))
    t:add_le(f.rkey, tvb(16, 4))
    t:add_le(f.rlen, tvb(20, 4))
  end
  if kind == 6 then
    t:add_le(f.wc_error, tvb(24, 4))
  elseif bit.band(flags, 0x01) ~= 0 then
    t:add_le(f.imm, tvb(24, 4))
  end
  t:add_le(f.orig_len, tvb(28, 4))
  if truncated then t:add_proto_expert_info(e.truncated) end
  local arrow = dir == 0 and "→" or "←"
  pinfo.cols.src = string.format("conn %d", conn)
  pinfo.cols.info = string.format("%s %s", arrow, KINDS[kind] or "?")

  local payload = tvb:len() > 32 and tvb(32):tvb() or nil
  if kind == 1 then
    if payload then dissect_pipe(payload, pinfo, tree, conn) end
  elseif kind == 2 or kind == 3 then
    if payload then dissect_message(payload, pinfo, tree, conn, truncated) end
  elseif kind == 4 then
    local len = tvb(28, 4):le_uint()
    local raddr, rkey = tvb(8, 8):le_uint64(), tvb(16, 4):le_uint()
    if payload and len == 24 and payload:len() == 24 and payload(20, 4):string() == "RDIO" then
      dissect_status_block(payload, pinfo, tree, conn)
    else
      local item = tree:add(rdio, tvb(32), "RDMA write of read data")
      item:add(r.write_data, len)
      local st = state(pinfo)
      if not pinfo.visited then st.write_for = read_dest[tostring(rkey) .. ":" .. tostring(raddr)] end
      if st.write_for ~= nil then item:add(r.write_for, st.write_for) end
      pinfo.cols.info:append(string.format(" data %d bytes to key 0x%x", len, rkey))
    end
    if bit.band(flags, 0x01) ~= 0 then
      pinfo.cols.info:append(string.format(" imm=0x%08x", tvb(24, 4):le_uint()))
    end
  elseif kind == 5 then
    pinfo.cols.info:append(string.format(" imm=0x%08x (request id of an interrupt completion)",
      tvb(24, 4):le_uint()))
  elseif kind == 6 then
    local code = tvb(24, 4):le_uint()
    if code == 6 then
      t:add_proto_expert_info(e.flushed)
    else
      t:add_proto_expert_info(e.wc_error, WC_ERRORS[code] or tostring(code))
    end
    pinfo.cols.info:append(" " .. (WC_ERRORS[code] or tostring(code)))
  end
  return tvb:len()
end

DissectorTable.get("wtap_encap"):add(wtap.USER0, cap)
