// The swtpm-channel view of one instance, shared by all of its control and
// data connections: whether the TPM was stopped (CMD_STOP/CMD_SHUTDOWN)
// and needs CMD_INIT, the locality for raw data frames, the buffer size,
// and state blobs received with CMD_SET_STATEBLOB for the next CMD_INIT.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "proto/engine_messages.h"
#include "proto/uuid.h"

namespace vtpm::swtpm {

class StreamConnection;

struct Session {
  Uuid id;
  TpmVersion version = TpmVersion::k20;
  bool running = true;
  std::uint8_t locality = 0;
  std::uint32_t buffer_size = 4096;
  std::optional<engine::StateBlobs> incoming;  // from SET_STATEBLOB, used by INIT
  std::weak_ptr<StreamConnection> datafd;      // the connection CMD_SET_DATAFD gave us
};

}  // namespace vtpm::swtpm
