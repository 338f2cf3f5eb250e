# Run by `cmake --install` (and so by cpack) after the binary: the files
# whose place or form depends on the prefix, decided now, when the prefix is
# known (cpack installs this same build with the prefix /usr).
#
#   prefix /usr (a system install, the .deb)   /etc/wharf/config.json,
#                                              /lib/systemd/system/wharf.service,
#                                              /usr/share/man/man8/wharf.8.gz
#   any other prefix P                         P/etc/wharf/config.json,
#                                              P/lib/systemd/system/wharf.service,
#                                              P/share/man/man8/wharf.8
#
# as GNUInstallDirs puts sysconfdir for /usr, as Debian bookworm keeps units,
# and as Debian wants manual pages (gzip -9n). The unit names the binary and
# the config where they are installed.
# An existing config is never overwritten outside a package build: the new
# one is left beside it as config.json.new.
#
# Set by packaging/CMakeLists.txt: WHARF_PKG_DIR (the built files),
# WHARF_PKG_SRC (packaging/), WHARF_PKG_BINDIR and WHARF_PKG_MANDIR
# (relative to the prefix).

if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc_dir /etc/wharf)
  set(unit_dir /lib/systemd/system)
else()
  set(etc_dir ${CMAKE_INSTALL_PREFIX}/etc/wharf)
  set(unit_dir ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()

set(WHARF_BIN ${CMAKE_INSTALL_PREFIX}/${WHARF_PKG_BINDIR}/wharf)
set(WHARF_CONFIG ${etc_dir}/config.json)
configure_file(${WHARF_PKG_SRC}/wharf.service.in ${WHARF_PKG_DIR}/wharf.service @ONLY)
file(INSTALL DESTINATION ${unit_dir} TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES ${WHARF_PKG_DIR}/wharf.service)

set(config_at "$ENV{DESTDIR}${WHARF_CONFIG}")
if(EXISTS "${config_at}" AND "$ENV{DESTDIR}" STREQUAL "")
  file(INSTALL DESTINATION ${etc_dir} TYPE FILE RENAME config.json.new
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES ${WHARF_PKG_DIR}/config.json)
  message(STATUS "Kept: ${WHARF_CONFIG} (the default is beside it, config.json.new)")
else()
  file(INSTALL DESTINATION ${etc_dir} TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES ${WHARF_PKG_DIR}/config.json)
endif()

set(man_dir ${CMAKE_INSTALL_PREFIX}/${WHARF_PKG_MANDIR}/man8)
set(man ${WHARF_PKG_DIR}/wharf.8)
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  execute_process(COMMAND gzip -9n -c ${man} OUTPUT_FILE ${man}.gz RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "gzip ${man}: ${rc}")
  endif()
  set(man ${man}.gz)
endif()
file(INSTALL DESTINATION ${man_dir} TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES ${man})
