// The Xen platform over the dom0 libraries: libxenstore, libxengnttab,
// libxenevtchn (Debian's libxen-dev). Built only where they are found;
// vtpmd without them has no Xen backend (config xen_backend=on fails).
#pragma once

#include <vector>

#include "backends/xen/platform.h"

namespace vtpm::xen {

// Opens the three handles; fails with a clear message when not running in
// a Xen domain with xenstored, gntdev and evtchn available.
Result<Platform> open_real_platform();

// The gntdev and evtchn ioctls the libraries issue while serving, for the
// daemon's system-call allow-list.
std::vector<unsigned long> xen_ioctls();

}  // namespace vtpm::xen
