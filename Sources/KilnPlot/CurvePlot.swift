import CCairo
import Foundation
import Kiln

/// Training curves drawn with cairo: one panel per series (loss, error, learning rate, ...) stacked
/// vertically, every run overlaid in its own colour, with axes, a light grid and a legend. Written as SVG,
/// PNG or PDF, chosen by the file's extension.
public struct CurvePlot {
    public var curves: MonitorCurves
    public var width = 900.0
    public var panelHeight = 260.0
    /// Okabe and Ito's palette, distinguishable with the common colour-vision deficiencies, all with a
    /// contrast of at least 3:1 against white for lines (black first for the only run).
    static let palette: [(Double, Double, Double)] = [
        (0.0, 0.447, 0.698), (0.835, 0.369, 0.0), (0.0, 0.620, 0.451), (0.8, 0.475, 0.655),
        (0.0, 0.0, 0.0), (0.337, 0.706, 0.914), (0.902, 0.624, 0.0),
    ]

    public init(curves: MonitorCurves) { self.curves = curves }

    public enum Format: String, CaseIterable { case svg, png, pdf }

    public static func format(of path: String) throws -> Format {
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        guard let f = Format(rawValue: ext) else {
            throw KilnError.io("\(path): the picture's format comes from its extension: .svg, .png or .pdf")
        }
        return f
    }

    public var height: Double { Double(curves.series.count) * panelHeight + 40 }

    /// Draws the picture into `path` (written to a temporary file first, then moved into place).
    public func write(to path: String) throws {
        let format = try Self.format(of: path)
        let temporary = path + ".tmp-\(getpid())"
        defer { unlink(temporary) }
        let surface: OpaquePointer?
        switch format {
        case .svg: surface = cairo_svg_surface_create(temporary, width, height)
        case .pdf: surface = cairo_pdf_surface_create(temporary, width, height)
        case .png: surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(width), Int32(height))
        }
        guard let surface, cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS else {
            throw KilnError.io("cannot create a \(format.rawValue) picture at \(path)")
        }
        let cr = cairo_create(surface)
        draw(cr)
        cairo_destroy(cr)
        if format == .png {
            let status = cairo_surface_write_to_png(surface, temporary)
            cairo_surface_destroy(surface)
            guard status == CAIRO_STATUS_SUCCESS else { throw KilnError.io("cannot write \(path): \(String(cString: cairo_status_to_string(status)))") }
        } else {
            cairo_surface_finish(surface)
            let status = cairo_surface_status(surface)
            cairo_surface_destroy(surface)
            guard status == CAIRO_STATUS_SUCCESS else { throw KilnError.io("cannot write \(path): \(String(cString: cairo_status_to_string(status)))") }
        }
        guard rename(temporary, path) == 0 else { throw KilnError.io("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    func draw(_ cr: OpaquePointer?) {
        cairo_set_source_rgb(cr, 1, 1, 1)
        cairo_paint(cr)
        cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL)
        let runs = curves.runs
        // Legend across the top.
        var x = 70.0
        cairo_set_font_size(cr, 13)
        for (k, run) in runs.enumerated() {
            let c = Self.palette[k % Self.palette.count]
            cairo_set_source_rgb(cr, c.0, c.1, c.2)
            cairo_set_line_width(cr, 3)
            cairo_move_to(cr, x, 22)
            cairo_line_to(cr, x + 24, 22)
            cairo_stroke(cr)
            cairo_set_source_rgb(cr, 0.1, 0.1, 0.1)
            cairo_move_to(cr, x + 30, 27)
            cairo_show_text(cr, run)
            var extents = cairo_text_extents_t()
            cairo_text_extents(cr, run, &extents)
            x += 30 + extents.x_advance + 24
        }
        for (p, series) in curves.series.enumerated() {
            let top = 40 + Double(p) * panelHeight
            panel(cr, series: series, runs: runs, frame: (left: 70, top: top + 28, right: width - 24, bottom: top + panelHeight - 36))
        }
    }

    func panel(_ cr: OpaquePointer?, series: String, runs: [String], frame f: (left: Double, top: Double, right: Double, bottom: Double)) {
        let lines = curves.curves.filter { $0.series == series }
        let xs = lines.flatMap { $0.points.map(\.x) }, ys = lines.flatMap { $0.points.map(\.y) }
        // Iterations start at 0; a series with no negative value (a loss, an error) keeps its axis at or above 0.
        let xTicks = Self.ticks(min(0, xs.min() ?? 0), xs.max() ?? 1, nonNegative: true)
        let yTicks = Self.ticks(ys.min() ?? 0, ys.max() ?? 1, nonNegative: (ys.min() ?? 0) >= 0)
        let (x0, x1) = (xTicks.first!, xTicks.last!), (y0, y1) = (yTicks.first!, yTicks.last!)
        func px(_ x: Double) -> Double { f.left + (x - x0) / max(x1 - x0, 1e-300) * (f.right - f.left) }
        func py(_ y: Double) -> Double { f.bottom - (y - y0) / max(y1 - y0, 1e-300) * (f.bottom - f.top) }
        // Title.
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1)
        cairo_set_font_size(cr, 14)
        cairo_move_to(cr, f.left, f.top - 10)
        cairo_show_text(cr, series)
        // Grid and tick labels.
        cairo_set_font_size(cr, 11)
        cairo_set_line_width(cr, 1)
        for t in yTicks {
            cairo_set_source_rgb(cr, 0.88, 0.88, 0.88)
            cairo_move_to(cr, f.left, py(t)); cairo_line_to(cr, f.right, py(t)); cairo_stroke(cr)
            let label = Self.label(t)
            var e = cairo_text_extents_t()
            cairo_text_extents(cr, label, &e)
            cairo_set_source_rgb(cr, 0.25, 0.25, 0.25)
            cairo_move_to(cr, f.left - 6 - e.x_advance, py(t) + 4)
            cairo_show_text(cr, label)
        }
        for t in xTicks {
            cairo_set_source_rgb(cr, 0.88, 0.88, 0.88)
            cairo_move_to(cr, px(t), f.top); cairo_line_to(cr, px(t), f.bottom); cairo_stroke(cr)
            let label = Self.label(t)
            var e = cairo_text_extents_t()
            cairo_text_extents(cr, label, &e)
            cairo_set_source_rgb(cr, 0.25, 0.25, 0.25)
            cairo_move_to(cr, px(t) - e.x_advance / 2, f.bottom + 16)
            cairo_show_text(cr, label)
        }
        cairo_set_source_rgb(cr, 0.25, 0.25, 0.25)
        cairo_move_to(cr, f.right - 50, f.bottom + 30)
        cairo_show_text(cr, "iteration")
        // Frame.
        cairo_set_source_rgb(cr, 0.4, 0.4, 0.4)
        cairo_rectangle(cr, f.left, f.top, f.right - f.left, f.bottom - f.top)
        cairo_stroke(cr)
        // Curves; a series of one point per run (an error measured once per epoch) also gets markers.
        for line in lines {
            guard let k = runs.firstIndex(of: line.run) else { continue }
            let c = Self.palette[k % Self.palette.count]
            cairo_set_source_rgb(cr, c.0, c.1, c.2)
            cairo_set_line_width(cr, 2)
            for (i, p) in line.points.enumerated() {
                if i == 0 { cairo_move_to(cr, px(p.x), py(p.y)) } else { cairo_line_to(cr, px(p.x), py(p.y)) }
            }
            cairo_stroke(cr)
            if line.points.count <= 50 {
                for p in line.points {
                    cairo_arc(cr, px(p.x), py(p.y), 3.5, 0, 2 * Double.pi)
                    cairo_fill(cr)
                }
            }
        }
    }

    /// Round tick values covering lo...hi (1, 2 or 5 times a power of ten apart); a single value gets a range
    /// around it (not below 0 when `nonNegative`).
    static func ticks(_ lo: Double, _ hi: Double, nonNegative: Bool = false) -> [Double] {
        var (a, b) = (lo, hi)
        if !(b > a) {
            let half = max(abs(a) * 0.5, 0.5)
            (a, b) = (a - half, a + half)
        }
        if nonNegative { a = max(a, 0) }
        let raw = (b - a) / 5
        let power = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? 10 * power
        let start = nonNegative ? max(floor(a / step) * step, 0) : floor(a / step) * step
        let end = ceil(b / step) * step
        let count = Int(((end - start) / step).rounded())
        return (0...max(count, 1)).map { start + Double($0) * step }
    }

    static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1e5 || abs(v) < 1e-3 { return String(format: "%.0e", v) }
        if v == v.rounded() { return String(Int(v)) }
        return String(format: "%g", v)
    }
}
