# cmake -DMD2MAN=go-md2man -DIN=docs/pvmigd.8.md -DOUT=man/pvmigd.8
#       -DVERSION=0.1.0 -P man.cmake
# Converts one Markdown man page to roff and sets its title line:
#   .TH "PVMIGD" "8" "2026-12-08" "pvmig 0.1.0" "System Manager's Manual"
# (go-md2man makes ".TH pvmigd(8)" of the page's "# pvmigd(8)" heading).
# The date is SOURCE_DATE_EPOCH's when set (reproducible package builds:
# dpkg-buildpackage sets it from debian/changelog), else today, in UTC.
get_filename_component(page ${OUT} NAME)               # pvmigd.conf.5
string(REGEX MATCH "^(.*)\\.([0-9])$" _ ${page})
set(name ${CMAKE_MATCH_1})
set(section ${CMAKE_MATCH_2})
string(TOUPPER ${name} title)
if(section STREQUAL "1")
  set(manual "User Commands")
elseif(section STREQUAL "5")
  set(manual "File Formats Manual")
elseif(section STREQUAL "8")
  set(manual "System Manager's Manual")
else()
  message(FATAL_ERROR "man.cmake: no manual for section ${section}")
endif()
string(TIMESTAMP date "%Y-%m-%d" UTC)

get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
execute_process(COMMAND ${MD2MAN} -in ${IN} -out ${OUT}.tmp
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "go-md2man failed on ${IN}: ${err}")
endif()
file(READ ${OUT}.tmp roff)
string(FIND "${roff}" ".TH ${name}(${section})" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${IN}: no '# ${name}(${section})' heading for the title line")
endif()
string(REPLACE ".TH ${name}(${section})"
       ".TH \"${title}\" \"${section}\" \"${date}\" \"pvmig ${VERSION}\" \"${manual}\""
       roff "${roff}")
file(WRITE ${OUT} "${roff}")
file(REMOVE ${OUT}.tmp)
