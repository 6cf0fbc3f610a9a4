// cairo's drawing API with its SVG, PDF and PNG back ends (Debian: libcairo2-dev).
#include <cairo.h>
#include <cairo-svg.h>
#include <cairo-pdf.h>
