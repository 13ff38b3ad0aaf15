// vchan servers over libxenvchan (Debian's libxen-dev), built with the rest
// of the real platform.
#pragma once

#include <memory>
#include <vector>

#include "backends/xen/vchan.h"

namespace vtpm::xen {

std::unique_ptr<Vchans> open_real_vchans();

// The gntalloc and evtchn ioctls a libxenvchan server issues, for the
// daemon's system-call allow-list.
std::vector<unsigned long> vchan_ioctls();

}  // namespace vtpm::xen
