# find_package(vitbatch): the installed plugin SDK. Gives the target vitbatch::plugin_sdk
# (the headers) and the function vitbatch_add_backend(<name> SOURCES...), which builds
# libvitbatch_backend_<name>.so exporting the entry symbol alone.
get_filename_component(_vitbatch_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET vitbatch::plugin_sdk)
  add_library(vitbatch::plugin_sdk INTERFACE IMPORTED)
  set_target_properties(vitbatch::plugin_sdk PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_vitbatch_prefix}/include/vitbatch/plugin")
endif()
set(VITBATCH_PLUGIN_MAP "${CMAKE_CURRENT_LIST_DIR}/vit_plugin.map")
include("${CMAKE_CURRENT_LIST_DIR}/vitbatch_plugin.cmake")
