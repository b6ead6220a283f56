# Run by `cmake --install` (install(SCRIPT)): writes the systemd units and the example
# configs with the install-time prefix, so `cmake --install build --prefix P` gives units
# that start P/bin/mlops-*. MLOPS_SYSTEMD_SRC, MLOPS_REL_BINDIR and MLOPS_REL_DATADIR are
# set by the install(CODE) just before this script.
set(MLOPS_BINDIR "${CMAKE_INSTALL_PREFIX}/${MLOPS_REL_BINDIR}")
set(MLOPS_DATADIR "${CMAKE_INSTALL_PREFIX}/${MLOPS_REL_DATADIR}/mlops")
set(unitdir "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
set(confdir "$ENV{DESTDIR}${MLOPS_DATADIR}/conf")
file(MAKE_DIRECTORY "${unitdir}" "${confdir}")
foreach(svc registry ingest trainer scorer monitor notify)
  message(STATUS "Installing: ${unitdir}/mlops-${svc}.service")
  configure_file("${MLOPS_SYSTEMD_SRC}/mlops-${svc}.service.in" "${unitdir}/mlops-${svc}.service" @ONLY)
  message(STATUS "Installing: ${confdir}/${svc}.conf")
  configure_file("${MLOPS_SYSTEMD_SRC}/conf/${svc}.conf.in" "${confdir}/${svc}.conf" @ONLY)
endforeach()
message(STATUS "Installing: ${unitdir}/mlops.target")
configure_file("${MLOPS_SYSTEMD_SRC}/mlops.target" "${unitdir}/mlops.target" COPYONLY)
