import CGraphviz
import Foundation
import Kiln

/// nnabla's `nnabla.experimental.viewers.SimpleGraph`: draws the graph behind a variable with Graphviz.
///
/// Built in memory with libcgraph and laid out and rendered with libgvc: no `dot` process is started.
/// Style follows nnabla's viewer: functions are filled boxes coloured by type (Convolution blue, Affine red,
/// normalisations orange, ReLU green, pooling light blue, arithmetic purple, the rest gray; or by
/// `fnameColorMap`, with light gray for types it does not name); variables are ellipses (light gray, or by
/// `vnameColorMap`), with a black outline when they need a gradient; inputs are light cyan; parameters are
/// pink rounded boxes labelled by their name inside the function's parameter scope, and the function is
/// labelled with that scope (as nnabla does with `get_parameters()`). `verbose` adds shapes, need_grad and
/// the function arguments.
///
/// ```swift
/// let graph = SimpleGraph(verbose: false)
/// try graph.save(pred, path: "sample_graph")          // sample_graph (DOT) and sample_graph.png
/// try graph.view(pred)                                 // renders to a temporary file and opens it
/// ```
public struct SimpleGraph {
    public var format: String
    public var verbose: Bool
    public var fnameColorMap: [String: String]?
    public var vnameColorMap: [String: String]?
    /// Above this many functions the graph is drawn compactly (`compactDigraph`): intermediate values become
    /// edges (labelled with their shape when verbose) instead of nodes, parameters are listed in their
    /// function's box, and Kiln lays the graph out itself (`LayeredLayout`) instead of dot, whose layout
    /// time grows faster than linearly in the number of nodes (5,000 functions took 5-15 s).
    public var largeGraphFunctions = 1000
    /// Kiln's readable drawing (`scopedDigraph`): scopes as clusters, labels without them. Off: nnabla's
    /// drawing, each function labelled with its full scope.
    public var scoped = false
    /// With `scoped`: chains of functions as one box, parameters listed, values as edges, repeated blocks
    /// drawn once with their count.
    public var compact = false
    /// Lay the graph out left to right rather than top to bottom.
    public var leftToRight = false

    public init(format: String = "png", verbose: Bool = false, fnameColorMap: [String: String]? = nil,
                vnameColorMap: [String: String]? = nil) {
        self.format = format
        self.verbose = verbose
        self.fnameColorMap = fnameColorMap
        self.vnameColorMap = vnameColorMap
    }

    /// The Graphviz graph of everything reachable from `vleaf` (nnabla's `create_graphviz_digraph`).
    public func createGraphvizDigraph(_ vleaf: Variable, format: String? = nil) throws -> Digraph {
        try createGraphvizDigraph([vleaf], format: format)
    }

    /// The graph behind several outputs at once (shared parts drawn once).
    public func createGraphvizDigraph(_ vleaves: [Variable], format: String? = nil) throws -> Digraph {
        let nodes = SimpleGraph.functionNodes(from: vleaves)
        let scopes = SimpleGraph.parameterScopes(nodes)
        if scoped && nodes.count <= largeGraphFunctions { return try scopedDigraph(vleaves, format: format ?? self.format) }
        if nodes.count > largeGraphFunctions {
            return try compactDigraph(nodes, roots: vleaves, scopes: scopes, format: format ?? self.format)
        }
        let g = try Digraph(name: "kiln", format: format ?? self.format)
        SimpleGraph.setDefaults(g)
        if leftToRight { g.setGraphAttribute("rankdir", "LR") }
        var drawn = Set<String>()
        for n in nodes {
            let fid = "f\(n.sequence)"
            for v in n.inputs {
                let vid = SimpleGraph.variableID(v)
                if drawn.insert(vid).inserted {
                    g.node(vid, variableStyle(v, type: v.type, needGrad: v.needGrad, scopes: scopes).attributes)
                }
                g.edge(vid, fid)
            }
            let outs = n.outputs
            for (i, t) in n.outputTypes.enumerated() {
                let vid = "v\(n.sequence)_\(i)"
                let v = i < outs.count ? outs[i] : nil
                if drawn.insert(vid).inserted {
                    g.node(vid, variableStyle(v, type: t, needGrad: v?.needGrad ?? false, scopes: scopes).attributes)
                }
                g.edge(fid, vid)
            }
            g.node(fid, functionStyle(n, scope: scopes.functionScope[ObjectIdentifier(n)]).attributes)
        }
        // Roots that no function produced (a lone input) still appear.
        for v in vleaves where v.parent == nil {
            g.node(SimpleGraph.variableID(v), variableStyle(v, type: v.type, needGrad: v.needGrad, scopes: scopes).attributes)
        }
        return g
    }

    /// Node and edge defaults shared by both drawings.
    static let fontSize = 11.0
    static let arrowSize = 0.7
    static func setDefaults(_ g: Digraph) {
        g.setNodeDefault("style", "filled")
        g.setNodeDefault("fontname", "Helvetica")
        g.setNodeDefault("fontsize", "\(Int(fontSize))")
        g.setEdgeDefault("arrowsize", "\(arrowSize)")
    }

    /// Renders the graph to a file, as nnabla's `save`: when `path` does not end in ".<format>" the picture
    /// goes to `path.<format>` and the DOT source to `path`; when it does, the picture goes to `path` and the
    /// source to the same name with ".gv". `cleanup` leaves the source out. Returns the picture's path.
    @discardableResult
    public func save(_ vleaf: Variable, path: String, cleanup: Bool = false, format: String? = nil) throws -> String {
        let g = try createGraphvizDigraph(vleaf, format: format)
        let ext = "." + g.format
        let picture: String, source: String
        if path.lowercased().hasSuffix(ext) {
            picture = path
            source = String(path.dropLast(ext.count)) + ".gv"
        } else {
            picture = path + ext
            source = path
        }
        try g.render(to: picture)
        if !cleanup { try g.writeSource(to: source) }
        return picture
    }

    /// Renders the graph (to a temporary file unless `path` is given) and opens it with `xdg-open` when a
    /// display is available ($DISPLAY or $WAYLAND_DISPLAY set and xdg-open on PATH); otherwise prints where
    /// the file is. Returns the picture's path.
    @discardableResult
    public func view(_ vleaf: Variable, path: String? = nil, cleanup: Bool = true, format: String? = nil) throws -> String {
        let base = path ?? (NSTemporaryDirectory() as NSString)
            .appendingPathComponent("kiln-graph-\(getpid())-\(vleaf.sequence)")
        let picture = try save(vleaf, path: base, cleanup: cleanup, format: format)
        let env = ProcessInfo.processInfo.environment
        let hasDisplay = !(env["DISPLAY"] ?? "").isEmpty || !(env["WAYLAND_DISPLAY"] ?? "").isEmpty
        if hasDisplay, let opener = SimpleGraph.findExecutable("xdg-open") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: opener)
            p.arguments = [picture]
            do { try p.run() } catch { print("graph written to \(picture) (xdg-open failed: \(error))") }
        } else {
            print("graph written to \(picture)")
        }
        return picture
    }

    // MARK: traversal

    /// The function nodes reachable from `roots` through `parent`/`inputs`, each once, in creation order
    /// (a topological order). The compiler's own collection, so the picture shows exactly what it plans.
    public static func functionNodes(from roots: [Variable]) -> [FunctionNode] {
        GraphCollector.nodes(from: roots)
    }

    /// A node id per value: leaves by their own sequence, outputs by producer and index (an output variable
    /// the user dropped still has an id).
    static func variableID(_ v: Variable) -> String {
        if let p = v.parent { return "v\(p.sequence)_\(v.outputIndex)" }
        return "l\(v.sequence)"
    }

    // MARK: styling

    struct Scopes {
        /// Per function: the common scope of its parameters ("conv1/conv").
        var functionScope: [ObjectIdentifier: String] = [:]
        /// Per parameter: its name inside that scope ("W").
        var shortName: [ObjectIdentifier: String] = [:]
    }

    static func isParameter(_ v: Variable) -> Bool {
        guard v.parent == nil else { return false }
        if v.needGrad || v.isParameter { return true }
        return !v.name.isEmpty && Parameters.get(v.name) === v
    }

    /// nnabla's `fscope`: a function's scope is the common prefix of its parameters' scopes, and each
    /// parameter is labelled by the rest of its name.
    static func parameterScopes(_ nodes: [FunctionNode]) -> Scopes {
        var s = Scopes()
        for n in nodes {
            let params = n.inputs.filter { isParameter($0) && $0.name.contains("/") }
            guard !params.isEmpty else { continue }
            let paths = params.map { $0.name.split(separator: "/", omittingEmptySubsequences: false).map(String.init) }
            var common = Array(paths[0].dropLast())
            for p in paths.dropFirst() {
                var k = 0
                while k < common.count && k < p.count - 1 && common[k] == p[k] { k += 1 }
                common = Array(common.prefix(k))
            }
            guard !common.isEmpty else { continue }
            s.functionScope[ObjectIdentifier(n)] = common.joined(separator: "/")
            for (v, p) in zip(params, paths) where s.shortName[ObjectIdentifier(v)] == nil {
                s.shortName[ObjectIdentifier(v)] = p.dropFirst(common.count).joined(separator: "/")
            }
        }
        return s
    }

    /// nnabla's `_map_fname_to_color`, on the function type.
    func functionColor(_ type: String) -> String {
        if let map = fnameColorMap { return map[type] ?? "lightgray" }
        if type.contains("Conv") { return "blue" }
        if type.contains("Affine") { return "red" }
        if type.contains("Norm") { return "orange" }
        if type.contains("ReLU") { return "green" }
        if type.contains("Pool") { return "lightblue2" }
        if ["Add", "Sub", "Mul", "Div"].contains(where: { type.contains($0) }) { return "purple" }
        return "gray"
    }

    /// The text colour with the higher WCAG 2 contrast ratio against the fill: black or white. Fills are
    /// Graphviz colour names (the ones this viewer uses and common others) or #rrggbb; an unknown name gets
    /// black, which reads on most named colours.
    static func fontColor(for fill: String) -> String {
        guard let withBlack = contrast(fill, "black"), let withWhite = contrast(fill, "white") else { return "black" }
        return withBlack >= withWhite ? "black" : "white"
    }

    /// WCAG 2 contrast ratio between two colours (for tests and for choosing text colours).
    static func contrast(_ a: String, _ b: String) -> Double? {
        guard let x = rgb(a), let y = rgb(b) else { return nil }
        func linear(_ c: Double) -> Double { c <= 0.03928 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4) }
        func luminance(_ c: (Double, Double, Double)) -> Double { 0.2126 * linear(c.0) + 0.7152 * linear(c.1) + 0.0722 * linear(c.2) }
        let (l1, l2) = (luminance(x), luminance(y))
        return (max(l1, l2) + 0.05) / (min(l1, l2) + 0.05)
    }

    /// X11 values of the colour names Graphviz takes that this viewer and nnabla's use.
    static let namedColors: [String: (Int, Int, Int)] = [
        "black": (0, 0, 0), "white": (255, 255, 255), "blue": (0, 0, 255), "red": (255, 0, 0), "green": (0, 255, 0),
        "orange": (255, 165, 0), "purple": (160, 32, 240), "gray": (190, 190, 190), "grey": (190, 190, 190),
        "lightgray": (211, 211, 211), "lightgrey": (211, 211, 211), "lightblue2": (178, 223, 238),
        "lightblue": (173, 216, 230), "lightcyan": (224, 255, 255), "pink": (255, 192, 203), "yellow": (255, 255, 0),
        "gold": (255, 215, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255), "brown": (165, 42, 42),
        "navy": (0, 0, 128), "darkgreen": (0, 100, 0), "khaki": (240, 230, 140), "beige": (245, 245, 220),
        "ivory": (255, 255, 240), "gray40": (102, 102, 102), "violet": (238, 130, 238),
    ]

    static func rgb(_ color: String) -> (Double, Double, Double)? {
        let c = color.lowercased()
        if c.hasPrefix("#"), c.count == 7, let v = Int(c.dropFirst(), radix: 16) {
            return (Double(v >> 16 & 0xFF) / 255, Double(v >> 8 & 0xFF) / 255, Double(v & 0xFF) / 255)
        }
        guard let (r, g, b) = namedColors[c] else { return nil }
        return (Double(r) / 255, Double(g) / 255, Double(b) / 255)
    }

    static func shapeText(_ shape: [Int]) -> String {
        "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
    }

    /// A node's Graphviz attributes (label included), the label's lines as text and its outline.
    struct NodeStyle {
        var attributes: [(String, String)]
        var lines: [String]
        var shape: LayeredLayout.Shape
    }

    func variableStyle(_ v: Variable?, type: TensorType, needGrad: Bool, scopes: Scopes) -> NodeStyle {
        let isParam = v.map(SimpleGraph.isParameter) ?? false
        var name = v?.name ?? ""
        if isParam, let v, let short = scopes.shortName[ObjectIdentifier(v)] { name = short }
        if name.isEmpty { name = "h" }
        var lines = [name]
        if verbose {
            lines.append(SimpleGraph.shapeText(type.shape) + (type.dtype == .float32 ? "" : " \(type.dtype.rawValue)"))
            lines.append("need_grad=\(needGrad)")
        }
        var attrs: [(String, String)] = [("label", labelLines(lines))]
        if isParam {
            attrs += [("shape", "box"), ("style", needGrad ? "filled,rounded" : "filled,rounded,dashed"),
                      ("fillcolor", "pink"), ("color", needGrad ? "black" : "gray40"), ("penwidth", needGrad ? "1.5" : "1")]
        } else {
            let isInput = v != nil && v?.parent == nil
            var fill = isInput ? "lightcyan" : "lightgray"
            if let map = vnameColorMap, let n = v?.name, let c = map[n] { fill = c }
            attrs += [("shape", "ellipse"), ("fillcolor", fill), ("color", needGrad ? "black" : fill)]
        }
        if let v, !v.name.isEmpty { attrs.append(("tooltip", "\(v.name) \(type)")) }
        return NodeStyle(attributes: attrs, lines: lines, shape: isParam ? .box : .ellipse)
    }

    func functionStyle(_ n: FunctionNode, scope: String?, parameters: [String] = []) -> NodeStyle {
        var lines = [n.name.isEmpty ? n.typeName : n.name]
        if !n.name.isEmpty && n.name != n.typeName { lines.append("(\(n.typeName))") }
        if let scope { lines.append(scope) }
        if !parameters.isEmpty { lines.append(parameters.joined(separator: ", ")) }
        if verbose {
            for (k, v) in n.function.arguments { lines.append("\(k)=\(v)") }
        }
        let fill = functionColor(n.typeName)
        let attrs = [("label", labelLines(lines)), ("shape", "box"), ("color", fill), ("fillcolor", fill),
                     ("fontcolor", SimpleGraph.fontColor(for: fill)), ("tooltip", n.typeName)]
        return NodeStyle(attributes: attrs, lines: lines, shape: .box)
    }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}
