// Pieces the ops and REST HTTP servers share. Thread: any.
#pragma once

#include <cstdint>
#include <exception>
#include <string>

#include "common/net_addr.h"

namespace karl {

// Why binding a TCP listener to addr:port fails ("Address already in use"). httplib
// only says that it failed, so this binds a probe socket set up the same way
// (SO_REUSEADDR, no SO_REUSEPORT) to learn errno.
std::string BindFailureReason(const IpAddress& addr, uint16_t port);

// Message for an error httplib answered on its own, before any handler ("bad request").
std::string HttpErrorText(int status);

// what() of the exception a handler threw, or "unknown exception".
std::string ExceptionText(std::exception_ptr ep);

}  // namespace karl
