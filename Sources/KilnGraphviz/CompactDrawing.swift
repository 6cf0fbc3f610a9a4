import Foundation
import Kiln

/// The drawing of large graphs (above `SimpleGraph.largeGraphFunctions`): function boxes with their
/// parameters listed inside, input and output ellipses, and intermediate values as edges. Kiln lays it out
/// itself with `LayeredLayout` (linear apart from sorting) and hands libgvc every node's position and size
/// and every edge's route; libgvc's "nop2" engine (what `neato -n2` does) keeps them as given, so Graphviz
/// only renders. dot on the same 5,000 functions spent 5-15 s in its coordinate assignment alone.
extension SimpleGraph {
    func compactDigraph(_ nodes: [FunctionNode], roots: [Variable], scopes: Scopes, format: String) throws -> Digraph {
        var ids: [String] = []
        var styles: [NodeStyle] = []
        var index: [String: Int] = [:]
        var edges: [(tail: Int, head: Int)] = []
        var edgeAttributes: [[(String, String)]] = []
        func add(_ id: String, _ style: @autoclosure () -> NodeStyle) -> Int {
            if let i = index[id] { return i }
            index[id] = ids.count
            ids.append(id)
            styles.append(style())
            return ids.count - 1
        }
        // Functions come in creation (schedule) order, so a producer is always added before its consumers.
        for n in nodes {
            var params: [String] = []
            var inputs: [(Int, [(String, String)])] = []
            for v in n.inputs {
                if SimpleGraph.isParameter(v) {
                    params.append(scopes.shortName[ObjectIdentifier(v)] ?? (v.name.isEmpty ? "param" : v.name))
                    continue
                }
                let attrs: [(String, String)] = verbose ? [("label", SimpleGraph.shapeText(v.shape))] : []
                let tail: Int
                if let p = v.parent, let i = index["f\(p.sequence)"] {
                    tail = i
                } else {
                    tail = add(SimpleGraph.variableID(v), variableStyle(v, type: v.type, needGrad: v.needGrad, scopes: scopes))
                }
                inputs.append((tail, attrs))
            }
            let f = add("f\(n.sequence)", functionStyle(n, scope: scopes.functionScope[ObjectIdentifier(n)], parameters: params))
            for (tail, attrs) in inputs {
                edges.append((tail, f))
                edgeAttributes.append(attrs)
            }
        }
        for r in roots where index[SimpleGraph.variableID(r)] == nil {
            let o = add(SimpleGraph.variableID(r), variableStyle(r, type: r.type, needGrad: r.needGrad, scopes: scopes))
            if let p = r.parent, let f = index["f\(p.sequence)"] {
                edges.append((f, o))
                edgeAttributes.append([])
            }
        }

        let sizes = styles.map { s in
            let size = LabelSize.node(s.lines, fontSize: SimpleGraph.fontSize, shape: s.shape)
            return LayeredLayout.Node(width: size.width, height: size.height, shape: s.shape)
        }
        let layout: LayeredLayout
        do {
            // Verbose drawings label edges with shapes: leave those labels room between the ranks.
            layout = try LayeredLayout.compute(nodes: sizes, edges: edges, rankSeparation: verbose ? 54 : 36)
        } catch {
            throw GraphvizError.layoutFailed("\(error)")
        }

        let g = try Digraph(name: "kiln", format: format, engine: "nop2")
        SimpleGraph.setDefaults(g)
        // Nodes are drawn over the edge ends; an edge without a route (none here) would be a straight line.
        g.setGraphAttribute("outputorder", "edgesfirst")
        g.setGraphAttribute("splines", "line")
        g.setNodeDefault("fixedsize", "true")
        g.setEdgeDefault("fontname", "Helvetica")
        g.setEdgeDefault("fontsize", "9")
        for (i, id) in ids.enumerated() {
            let c = layout.center[i]
            g.node(id, styles[i].attributes + [
                ("pos", "\(coordinate(c.x)),\(coordinate(c.y))"),
                ("width", inches(sizes[i].width)), ("height", inches(sizes[i].height)),
            ])
        }
        for (k, e) in edges.enumerated() {
            g.edge(ids[e.tail], ids[e.head], edgeAttributes[k] + [("pos", SimpleGraph.splinePos(layout.routes[k]))])
        }
        return g
    }

    /// An edge route as Graphviz's `pos`: "e,TIP" for the arrowhead, then a piecewise cubic B-spline whose
    /// segments are straight (control points at a third and two thirds), ending where the arrowhead starts.
    static func splinePos(_ route: [LayeredLayout.Point]) -> String {
        guard route.count >= 2 else { return "" }
        var points = route
        let tip = route[route.count - 1], before = route[route.count - 2]
        let dx = tip.x - before.x, dy = tip.y - before.y
        let length = (dx * dx + dy * dy).squareRoot()
        // Graphviz's arrow is 10 points long at arrowsize 1; keep a stub of the line when the last segment is short.
        let arrow = min(10 * arrowSize, length * 0.8)
        if length > 0 {
            points[points.count - 1] = LayeredLayout.Point(x: tip.x - dx / length * arrow, y: tip.y - dy / length * arrow)
        }
        var out = "e,\(coordinate(tip.x)),\(coordinate(tip.y)) \(coordinate(points[0].x)),\(coordinate(points[0].y))"
        for j in 1..<points.count {
            let a = points[j - 1], b = points[j]
            for t in [1.0 / 3, 2.0 / 3, 1] {
                out += " \(coordinate(a.x + (b.x - a.x) * t)),\(coordinate(a.y + (b.y - a.y) * t))"
            }
        }
        return out
    }
}

/// A coordinate in points with two decimals (cheaper than String(format:) for tens of thousands of points).
func coordinate(_ v: Double) -> String {
    let r = (v * 100).rounded() / 100
    guard r.isFinite else { return "0" }
    return r == r.rounded() && abs(r) < 1e15 ? String(Int(r)) : String(r)
}

/// Points as Graphviz's inches.
func inches(_ points: Double) -> String { String(points / 72) }
