import Foundation
import Kiln

/// A picture of a plan's memory: steps across (x), arena offsets down (y), one box per transient buffer
/// spanning its lifetime (`Liveness.lifetimes`) at its offset, coloured by kind (activation, gradient,
/// workspace). Lines mark the arena size (the peak of this placement, `arena_bytes`) and the lower bound
/// (the most bytes alive at one step); a legend and the plan's figures sit below.
///
/// Every node has a fixed position (`pos="x,y!"`, in points) and a fixed size, laid out with libgvc's "nop"
/// engine (what `neato -n` does), so the picture is exact and the cost is linear in the buffer count.
public enum PlanPicture {
    /// Fill colours by buffer kind.
    public static let colors: [BufferKind: String] = [
        .activation: "#4e79a7", .gradient: "#e15759", .workspace: "#f28e2b",
    ]
    /// Fill colour of activations held as 8-bit codes (quantized plans).
    public static let codesColor = "#76b7b2"
    /// Fill colour of activations stored in padded planes (`Layout`).
    public static let paddedColor = "#b07aa1"

    /// Plot size in points: 16 points per step within 480...2400 across, 420...960 down (keeps long plans
    /// from becoming a thin strip).
    static func plotWidth(steps: Int) -> Double { min(max(Double(steps) * 16, 480), 2400) }
    static func plotHeight(width: Double) -> Double { min(max(width * 0.4, 420), 960) }
    static let left = 100.0

    /// Renders the picture of `plan` to `path`; the format defaults to the path's extension.
    public static func render(_ plan: Plan, to path: String, format: String? = nil) throws {
        let f = try format.map(GraphvizFormats.validate) ?? GraphvizFormats.fromExtension(path)
        try digraph(plan, format: f).render(to: path)
    }

    /// The picture as a Graphviz graph (nodes with fixed positions, "nop" layout).
    public static func digraph(_ plan: Plan, format: String = "svg") throws -> Digraph {
        let g = try Digraph(name: "plan", format: format, engine: "nop")
        g.setGraphAttribute("bgcolor", "white")
        g.setGraphAttribute("pad", "0.2")
        g.setNodeDefault("fontname", "Helvetica")
        g.setNodeDefault("fontsize", "10")
        g.setNodeDefault("fixedsize", "true")
        g.setNodeDefault("label", "")

        let lifetimes = plan.lifetimes
        let steps = max(plan.steps.count, 1)
        let plotWidth = plotWidth(steps: steps)
        let plotHeight = plotHeight(width: plotWidth)
        let stepW = plotWidth / Double(steps)
        let top = plotHeight + 60
        let maxBytes = Double(max(plan.arenaBytes, plan.lowerBoundBytes, 1))
        let scale = plotHeight / maxBytes
        func yOf(_ offset: Double) -> Double { top - offset * scale }
        func num(_ x: Double) -> String { String(format: "%.2f", x) }
        func pos(_ x: Double, _ y: Double) -> String { "\(num(x)),\(num(y))!" }
        func inches(_ pt: Double) -> String { String(format: "%.4f", max(pt, 0.5) / 72) }
        var textID = 0
        func text(_ s: String, x: Double, y: Double, size: Double = 10, color: String = "black", width: Double = 120) {
            textID += 1
            let width = max(width, Double(s.count) * size * 0.6)
            g.node("text\(textID)", [("shape", "plaintext"), ("label", labelText(s)), ("pos", pos(x, y)),
                                     ("width", inches(width)), ("height", inches(size + 4)),
                                     ("fontsize", num(size)), ("fontcolor", color)])
        }
        func rule(_ id: String, x0: Double, x1: Double, y: Double, color: String, thickness: Double) {
            g.node(id, [("shape", "box"), ("style", "filled"), ("color", color), ("fillcolor", color),
                        ("penwidth", "0"), ("pos", pos((x0 + x1) / 2, y)),
                        ("width", inches(x1 - x0)), ("height", String(format: "%.4f", thickness / 72))])
        }

        // Frame of the plot.
        g.node("frame", [("shape", "box"), ("style", "solid"), ("color", "gray70"),
                         ("pos", pos(left + plotWidth / 2, top - plotHeight / 2)),
                         ("width", inches(plotWidth)), ("height", inches(plotHeight))])

        // One box per transient buffer.
        var counts: [BufferKind: Int] = [:], coded = 0, padded = 0
        for l in lifetimes {
            let b = plan.buffers[l.buffer]
            guard let offset = b.offset else { continue }
            if b.codes != nil { coded += 1 } else if b.layout != nil { padded += 1 } else { counts[b.kind, default: 0] += 1 }
            let x0 = left + Double(l.first) * stepW, x1 = left + Double(l.last + 1) * stepW
            let y0 = yOf(Double(offset)), y1 = yOf(Double(offset + l.bytes))
            let w = x1 - x0, h = y0 - y1
            let fill = b.codes != nil ? codesColor : b.layout != nil ? paddedColor : colors[b.kind] ?? "gray"
            var attrs: [(String, String)] = [
                ("shape", "box"), ("style", "filled"), ("fillcolor", fill), ("color", "white"),
                ("penwidth", w > 4 && h > 4 ? "0.5" : "0"),
                ("pos", pos((x0 + x1) / 2, (y0 + y1) / 2)), ("width", inches(w)), ("height", inches(h)),
                ("tooltip", labelText("\(b.name) \(b.kind.rawValue) \(b.type)\(b.codes.map { " as \($0)" } ?? "")"
                                      + "\(b.layout.map { " in \($0)" } ?? "") \(formatBytes(b.bytes)) "
                                      + "@\(offset) steps \(l.first)...\(l.last)")),
            ]
            if w > 8 * Double(b.name.count) && h > 12 {
                attrs += [("label", labelText(b.name)), ("fontcolor", "white"), ("fontsize", "8")]
            }
            g.node("buf\(b.id)", attrs)
        }

        // Arena size (peak of this placement) and lower bound.
        let right = left + plotWidth
        let arenaY = yOf(Double(plan.arenaBytes)), boundY = yOf(Double(plan.lowerBoundBytes))
        rule("arena_line", x0: left - 6, x1: right + 6, y: arenaY, color: "black", thickness: 1.5)
        rule("bound_line", x0: left - 6, x1: right + 6, y: boundY, color: "#59a14f", thickness: 1.2)
        let close = abs(arenaY - boundY) < 14
        text("arena_bytes \(formatBytes(plan.arenaBytes))", x: right + 80, y: arenaY - (close ? 7 : 0), width: 140)
        text("lower bound \(formatBytes(plan.lowerBoundBytes))", x: right + 80, y: boundY + (close ? 7 : 0),
             color: "#2f6b29", width: 140)

        // Offset axis (down) and step axis (across).
        for k in 0...4 {
            let off = maxBytes * Double(k) / 4
            text(formatBytes(Int(off)), x: left - 45, y: yOf(off), size: 9, width: 80)
        }
        let tick = niceTick(steps)
        var s = 0
        while s <= steps {
            text(String(s), x: left + Double(s) * stepW, y: top + 10, size: 9, width: 40)
            s += tick
        }
        text("step", x: left + plotWidth / 2, y: top + 26, size: 10, width: 60)
        text("arena offset", x: left - 45, y: top + 26, size: 10, width: 80)
        if plan.mode == .training && plan.forwardStepCount < plan.steps.count {
            let x = left + Double(plan.forwardStepCount) * stepW
            g.node("phase_line", [("shape", "box"), ("style", "filled"), ("color", "gray40"),
                                  ("fillcolor", "gray40"), ("penwidth", "0"), ("pos", pos(x, top - plotHeight / 2)),
                                  ("width", String(format: "%.4f", 0.8 / 72)), ("height", inches(plotHeight))])
            text("forward | backward", x: x, y: top + 42, size: 9, color: "gray30", width: 110)
        }

        // Legend and figures.
        let legendY = yOf(maxBytes) - 34
        var x = left
        for kind in [BufferKind.activation, .gradient, .workspace] {
            g.node("legend_\(kind.rawValue)", [("shape", "box"), ("style", "filled"), ("fillcolor", colors[kind] ?? "gray"),
                                              ("color", "black"), ("penwidth", "0.5"), ("pos", pos(x + 7, legendY)),
                                              ("width", inches(14)), ("height", inches(10))])
            text("\(kind.rawValue) (\(counts[kind] ?? 0))", x: x + 70, y: legendY, width: 110)
            x += 140
        }
        if coded > 0 {
            g.node("legend_codes", [("shape", "box"), ("style", "filled"), ("fillcolor", codesColor), ("color", "black"),
                                    ("penwidth", "0.5"), ("pos", pos(x + 7, legendY)), ("width", inches(14)), ("height", inches(10))])
            text("8-bit codes (\(coded))", x: x + 70, y: legendY, width: 110)
            x += 140
        }
        if padded > 0 {
            g.node("legend_padded", [("shape", "box"), ("style", "filled"), ("fillcolor", paddedColor), ("color", "black"),
                                     ("penwidth", "0.5"), ("pos", pos(x + 7, legendY)), ("width", inches(14)), ("height", inches(10))])
            text("padded planes (\(padded))", x: x + 70, y: legendY, width: 110)
        }
        let ratio = plan.lowerBoundBytes > 0 ? Double(plan.arenaBytes) / Double(plan.lowerBoundBytes) : 1
        let summary = "\(plan.mode.rawValue) plan: \(plan.steps.count) steps, \(lifetimes.count) transient buffers; "
            + "arena \(formatBytes(plan.arenaBytes)) (\(plan.placementAlgorithm)), lower bound "
            + "\(formatBytes(plan.lowerBoundBytes)) (x\(String(format: "%.3f", ratio))), naive \(formatBytes(plan.naiveBytes)), "
            + "persistent \(formatBytes(plan.persistentBytes))"
        text(summary, x: left + Double(summary.count) * 3, y: legendY - 22, size: 10, width: 600)
        if lifetimes.isEmpty { text("empty arena: no transient buffers", x: left + plotWidth / 2, y: top - plotHeight / 2, width: 220) }
        return g
    }

    /// A step-label interval giving at most about 12 labels (1, 2, 5, 10, 20, 50, ...).
    static func niceTick(_ steps: Int) -> Int {
        var t = 1
        while steps / t > 12 {
            if steps / (t * 2) <= 12 { return t * 2 }
            if steps / (t * 5) <= 12 { return t * 5 }
            t *= 10
        }
        return t
    }
}
