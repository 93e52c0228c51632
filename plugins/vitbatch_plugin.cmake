# vitbatch_add_backend(<name> SOURCES...): a backend as a run-time loaded module.
# Hidden visibility plus a version script export the entry symbol alone, so two
# backends built on different libraries never see each other's symbols.
function(vitbatch_add_backend name)
  set(target vitbatch_backend_${name})
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE vitbatch::plugin_sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${VITBATCH_PLUGIN_MAP})
  target_link_options(${target} PRIVATE
    "-Wl,--version-script=${VITBATCH_PLUGIN_MAP}" "-Wl,--no-undefined")
  install(TARGETS ${target} LIBRARY DESTINATION lib/vitbatch)
endfunction()
