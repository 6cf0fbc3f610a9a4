import Foundation

/// The size Graphviz gives a node for its label, estimated without asking Graphviz, so that Kiln can lay
/// out large graphs itself (`LayeredLayout`) and pin nodes at that size (`fixedsize=true`).
///
/// Widths come from the advance widths of DejaVu Sans, the font fontconfig resolves "Helvetica" to on
/// Debian and one of the widest common sans fonts (Helvetica, Arial, Liberation Sans and Nimbus Sans are
/// narrower), plus 8% for hinting at small sizes; characters outside ASCII count as 1 em. Heights follow
/// Graphviz's 1.2 line spacing. Margins and minimum sizes are Graphviz's defaults (0.11 by 0.055 inch
/// margins, 0.75 by 0.5 inch minimum), and an ellipse is fitted around the label box as Graphviz does.
/// The estimate errs large: a label always fits the outline it is given.
enum LabelSize {
    /// Advance widths in em of ASCII 32...126 in DejaVu Sans (measured through libgvc's pango plugin).
    static let asciiWidths: [Double] = [
        0.315, 0.398, 0.458, 0.840, 0.638, 0.953, 0.780, 0.278, 0.390, 0.390, 0.503, 0.840, 0.315, 0.360, 0.315, 0.338,
        0.638, 0.638, 0.638, 0.638, 0.638, 0.638, 0.638, 0.638, 0.638, 0.638, 0.338, 0.338, 0.840, 0.840, 0.840, 0.533,
        0.998, 0.712, 0.683, 0.698, 0.773, 0.630, 0.578, 0.773, 0.750, 0.293, 0.293, 0.653, 0.555, 0.863, 0.750, 0.788,
        0.600, 0.788, 0.698, 0.638, 0.593, 0.735, 0.683, 0.990, 0.683, 0.608, 0.683, 0.390, 0.338, 0.390, 0.840, 0.503,
        0.503, 0.615, 0.638, 0.548, 0.638, 0.615, 0.345, 0.638, 0.638, 0.278, 0.278, 0.578, 0.278, 0.975, 0.638, 0.615,
        0.638, 0.638, 0.391, 0.518, 0.390, 0.638, 0.593, 0.818, 0.593, 0.593, 0.525, 0.638, 0.338, 0.638, 0.840,
    ]

    /// Width in points of one line of text.
    static func textWidth(_ line: String, fontSize: Double) -> Double {
        var em = 0.0
        for u in line.unicodeScalars {
            let v = Int(u.value)
            em += (32...126).contains(v) ? asciiWidths[v - 32] : 1.0
        }
        return em * fontSize * 1.08
    }

    /// The node size (points) for a label of `lines` in a box or an ellipse.
    static func node(_ lines: [String], fontSize: Double, shape: LayeredLayout.Shape) -> (width: Double, height: Double) {
        let textW = lines.map { textWidth($0, fontSize: fontSize) }.max() ?? 0
        let textH = Double(max(lines.count, 1)) * fontSize * 1.2
        var w = textW + 2 * 0.11 * 72, h = textH + 2 * 0.055 * 72
        let minW = 0.75 * 72, minH = 0.5 * 72
        if shape == .ellipse {
            // Graphviz's fit of the label box in an ellipse: when the minimum height leaves room, only the
            // width grows (just enough for the box's corners); otherwise both grow by the square root of 2.
            if minH > h * 2.0.squareRoot() {
                w /= (1 - (h / minH) * (h / minH)).squareRoot()
                h = minH
            } else {
                w *= 2.0.squareRoot()
                h *= 2.0.squareRoot()
            }
        }
        return (max(w, minW).rounded(.up), max(h, minH).rounded(.up))
    }
}
