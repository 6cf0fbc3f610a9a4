import CGraphviz
import Foundation

/// Errors of the Graphviz viewer. Each names what failed and, for formats, what is supported.
public enum GraphvizError: Error, CustomStringConvertible, Equatable {
    /// The output format is not one the viewer renders.
    case unsupportedFormat(String, supported: [String])
    /// libgvc could not lay the graph out (its own message is included).
    case layoutFailed(String)
    /// libgvc could not render the laid-out graph (its own message is included).
    case renderFailed(String)
    /// A file could not be written or read.
    case io(String)

    public var description: String {
        switch self {
        case let .unsupportedFormat(f, supported):
            return "unsupported graph format '\(f)': supported formats are \(supported.joined(separator: ", "))"
        case let .layoutFailed(s): return "graphviz layout failed: \(s)"
        case let .renderFailed(s): return "graphviz rendering failed: \(s)"
        case let .io(s): return "i/o: \(s)"
        }
    }
}

/// The output formats the viewer renders through libgvc's plugins (cairo for png/pdf/ps, core for svg and
/// the DOT family). Everything else is refused before Graphviz is called.
public enum GraphvizFormats {
    public static let supported = ["png", "svg", "pdf", "dot", "ps", "jpg", "xdot", "json", "plain"]

    /// The lowercased format, or `unsupportedFormat` listing the supported ones.
    public static func validate(_ format: String) throws -> String {
        let f = format.lowercased()
        guard supported.contains(f) else { throw GraphvizError.unsupportedFormat(format, supported: supported) }
        return f
    }

    /// The format named by a path's extension ("out.svg" -> "svg"), validated.
    public static func fromExtension(_ path: String) throws -> String {
        let ext = (path as NSString).pathExtension
        guard !ext.isEmpty else { throw GraphvizError.unsupportedFormat("(no extension in \(path))", supported: supported) }
        return try validate(ext)
    }
}

/// libgvc and libcgraph keep process-wide state (the plugin context, the error sink, cgraph's string pool
/// and discipline globals) and are not thread-safe: every call into them goes through this lock. One
/// context is created on first use and lives for the process (as `dot` itself does).
enum GV {
    static let lock = NSRecursiveLock()

    /// libgvc's process-wide state as Kiln tracks it. Read and written only with `lock` held, which is what
    /// makes sharing it between threads safe.
    private final class State: @unchecked Sendable {
        var messages: [String] = []
        var context: OpaquePointer?
        var current: UnsafeMutableRawPointer?
    }
    private static let state = State()

    /// Messages libcgraph reported since the last `takeMessages` (gvLayout/gvRender errors, warnings).
    static var messages: [String] {
        get { state.messages }
        set { state.messages = newValue }
    }

    private static var contextStorage: OpaquePointer? {
        get { state.context }
        set { state.context = newValue }
    }

    /// The graph whose layout libgvc's globals describe. gvLayout points process-wide attribute symbols
    /// (N_shape, E_color, ...) at the graph it lays out, so rendering another graph's old layout would read
    /// the wrong attributes: a graph is laid out again when another one was laid out since.
    static var current: UnsafeMutableRawPointer? {
        get { state.current }
        set { state.current = newValue }
    }

    /// The shared GVC context. Call with `lock` held.
    static var context: OpaquePointer {
        if let c = contextStorage { return c }
        // Route cgraph's error reporting into `messages` instead of stderr, so failures become thrown errors.
        _ = agseterrf { msg in
            if let msg { GV.messages.append(String(cString: msg)) }
            return 0
        }
        let c = gvContext()!
        contextStorage = c
        return c
    }

    static func takeMessages() -> String {
        let s = messages.joined().trimmingCharacters(in: .whitespacesAndNewlines)
        messages.removeAll()
        return s
    }

    static func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}

/// cgraph's API takes non-const `char*` even where it only reads: pass Swift strings through this.
@inline(__always)
func withCStr<T>(_ s: String, _ body: (UnsafeMutablePointer<CChar>) throws -> T) rethrows -> T {
    try s.withCString { try body(UnsafeMutablePointer(mutating: $0)) }
}

/// A Graphviz graph built in memory with libcgraph and rendered with libgvc (no `dot` process, no DOT text
/// handed to another program). Owns the cgraph graph: `agopen` in init, `agclose` in deinit.
///
/// As nnabla's `graphviz.Digraph`: `render(to:)` writes a picture, `source` is the DOT text of the graph as
/// built, `dotSource` the DOT text after layout (what `dot -Tdot` prints).
public final class Digraph {
    /// The default output format (validated).
    public let format: String
    /// The layout engine: "dot" for graphs, "nop" for pictures whose node positions are fixed.
    public let engine: String
    let graph: UnsafeMutablePointer<Agraph_t>
    private var laidOut = false

    /// The Graphviz defaults of the attributes this package sets, used when an attribute is first declared.
    static let defaults: [String: String] = [
        "label": "\\N", "shape": "ellipse", "style": "", "color": "black", "fillcolor": "lightgrey",
        "fontcolor": "black", "fontsize": "14", "fontname": "Times-Roman", "width": "0.75", "height": "0.5",
        "fixedsize": "false", "pos": "", "tooltip": "", "penwidth": "1", "peripheries": "", "margin": "",
        "labeljust": "c", "arrowsize": "1", "id": "",
    ]

    init(name: String, format: String, engine: String = "dot") throws {
        self.format = try GraphvizFormats.validate(format)
        self.engine = engine
        var desc = Agdesc_t()
        desc.directed = 1
        desc.maingraph = 1
        let g: UnsafeMutablePointer<Agraph_t>? = GV.locked {
            _ = GV.context
            return withCStr(name) { agopen($0, desc, nil) }
        }
        guard let g else { throw GraphvizError.layoutFailed("agopen failed for graph '\(name)'") }
        graph = g
    }

    deinit {
        GV.locked {
            if laidOut { _ = gvFreeLayout(GV.context, graph) }
            if GV.current == UnsafeMutableRawPointer(graph) { GV.current = nil }
            _ = agclose(graph)
        }
    }

    /// Number of nodes and edges in the graph.
    public var nodeCount: Int { GV.locked { Int(agnnodes(graph)) } }
    public var edgeCount: Int { GV.locked { Int(agnedges(graph)) } }

    // MARK: building (callers hold no lock; each call takes it)

    func setGraphAttribute(_ name: String, _ value: String) {
        GV.locked {
            withCStr(name) { n in withCStr(value) { v in withCStr("") { d in
                _ = agsafeset(UnsafeMutableRawPointer(graph), n, v, d)
            } } }
        }
    }

    /// Declares a default for every node (`node [name=value]`).
    func setNodeDefault(_ name: String, _ value: String) {
        GV.locked {
            withCStr(name) { n in withCStr(value) { v in _ = agattr(graph, AGNODE, n, v) } }
        }
    }

    func setEdgeDefault(_ name: String, _ value: String) {
        GV.locked {
            withCStr(name) { n in withCStr(value) { v in _ = agattr(graph, AGEDGE, n, v) } }
        }
    }

    private func set(_ obj: UnsafeMutableRawPointer, _ attrs: [(String, String)]) {
        for (k, v) in attrs {
            withCStr(k) { n in withCStr(v) { val in withCStr(Digraph.defaults[k] ?? "") { d in
                _ = agsafeset(obj, n, val, d)
            } } }
        }
    }

    /// Adds (or updates) the node called `name` with the given attributes.
    @discardableResult
    func node(_ name: String, _ attrs: [(String, String)]) -> UnsafeMutablePointer<Agnode_t>? {
        GV.locked {
            guard let n = withCStr(name, { agnode(graph, $0, 1) }) else { return nil }
            set(UnsafeMutableRawPointer(n), attrs)
            return n
        }
    }

    /// Adds an edge between two existing nodes (by name), creating them if needed.
    func edge(_ tail: String, _ head: String, _ attrs: [(String, String)] = []) {
        GV.locked {
            guard let t = withCStr(tail, { agnode(graph, $0, 1) }),
                  let h = withCStr(head, { agnode(graph, $0, 1) }),
                  let e = agedge(graph, t, h, nil, 1) else { return }
            set(UnsafeMutableRawPointer(e), attrs)
        }
    }

    /// The cluster (a subgraph named "cluster_<path>", drawn as a box around its nodes) for a scope path,
    /// nested in the clusters of its prefixes; made on first use, labelled with its last component unless
    /// `labels` names it otherwise.
    func cluster(_ path: [String], labels: [String: String] = [:], style: [(String, String)] = []) -> UnsafeMutablePointer<Agraph_t>? {
        GV.locked { clusterLocked(path, labels: labels, style: style) }
    }

    private func clusterLocked(_ path: [String], labels: [String: String], style: [(String, String)]) -> UnsafeMutablePointer<Agraph_t>? {
        guard let last = path.last else { return graph }
        guard let parent = clusterLocked(Array(path.dropLast()), labels: labels, style: style) else { return nil }
        let key = path.joined(separator: "/")
        let existing = withCStr("cluster_" + key) { agsubg(parent, $0, 0) }
        if let existing { return existing }
        guard let sub = withCStr("cluster_" + key, { agsubg(parent, $0, 1) }) else { return nil }
        // Graph attributes are declared with empty defaults, so the root graph gets no title or frame.
        for (k, v) in [("label", labels[key] ?? last)] + style {
            withCStr(k) { n in withCStr(v) { val in withCStr("") { d in _ = agsafeset(UnsafeMutableRawPointer(sub), n, val, d) } } }
        }
        return sub
    }

    /// Puts an existing node into a cluster made by `cluster`.
    func place(_ name: String, in sub: UnsafeMutablePointer<Agraph_t>?) {
        guard let sub else { return }
        GV.locked {
            guard let n = withCStr(name, { agnode(graph, $0, 0) }) else { return }
            _ = agsubnode(sub, n, 1)
        }
    }

    // MARK: layout and rendering

    /// Lays the graph out unless it is the last one laid out (lock held by the caller).
    private func layoutIfNeeded() throws {
        if laidOut && GV.current == UnsafeMutableRawPointer(graph) { return }
        if laidOut { _ = gvFreeLayout(GV.context, graph); laidOut = false }
        GV.current = nil
        _ = GV.takeMessages()
        let rc = withCStr(engine) { gvLayout(GV.context, graph, $0) }
        guard rc == 0 else {
            let msg = GV.takeMessages()
            var hint = ""
            if msg.contains("not recognized") {
                hint = " (the Graphviz plugin configuration is missing: run `dot -c` as root, or "
                    + "/usr/sbin/libgvc6-config-update -c on Debian)"
            }
            throw GraphvizError.layoutFailed((msg.isEmpty ? "engine \(engine) returned \(rc)" : msg) + hint)
        }
        laidOut = true
        GV.current = UnsafeMutableRawPointer(graph)
    }

    /// Bitmaps are rendered with at most this many pixels: a larger picture is scaled down to it (keeping
    /// its aspect ratio, and each side within cairo's 32,767 pixels). cairo's time and memory, and above all
    /// the PNG encoder's, grow with the pixel count: 60 million pixels took 3 s to encode. Vector formats
    /// keep their full size.
    public var maxBitmapPixels = 25_000_000
    static let bitmapFormats: Set<String> = ["png", "jpg"]

    /// The `viewport` ("width,height,zoom" in points) that scales a laid-out picture down to
    /// `maxBitmapPixels` in a bitmap format, or "" (Graphviz's default view) when no scaling is needed.
    /// Read by libgvc at render time, so no new layout is needed. Call with the lock held, after layout.
    private func viewport(for format: String) -> String {
        guard Digraph.bitmapFormats.contains(format), let bbText = attribute("bb") else { return "" }
        // gvLayout writes "llx lly urx ury"; the DOT output writes it with commas.
        let bb = bbText.split(whereSeparator: { $0 == " " || $0 == "," }).compactMap { Double($0) }
        guard bb.count == 4 else { return "" }
        var pad = 4.0                                       // Graphviz's default pad, in points
        if let p = attribute("pad"), let inches = p.split(separator: ",").first.flatMap({ Double($0) }) { pad = inches * 72 }
        let w = bb[2] - bb[0] + 2 * pad + 2, h = bb[3] - bb[1] + 2 * pad + 2
        let pixelsPerPoint = 96.0 / 72                      // cairo's bitmap resolution
        let pixels = w * h * pixelsPerPoint * pixelsPerPoint
        let zoom = min((Double(max(maxBitmapPixels, 1)) / pixels).squareRoot(),
                       32_000 / (max(w, h) * pixelsPerPoint))
        guard zoom < 1, zoom > 0 else { return "" }
        return "\(w * zoom),\(h * zoom),\(zoom)"
    }

    /// A graph attribute's value, nil when it is not declared (lock held).
    private func attribute(_ name: String) -> String? {
        withCStr(name) { agget(UnsafeMutableRawPointer(graph), $0) }.map { String(cString: $0) }
    }

    /// Sets the viewport for `format` around `body` and clears it afterwards (lock held, after layout).
    private func withViewport<T>(for format: String, _ body: () throws -> T) rethrows -> T {
        let v = viewport(for: format)
        if v.isEmpty { return try body() }
        withCStr("viewport") { n in withCStr(v) { val in withCStr("") { d in
            _ = agsafeset(UnsafeMutableRawPointer(graph), n, val, d)
        } } }
        defer {
            withCStr("viewport") { n in withCStr("") { val in withCStr("") { d in
                _ = agsafeset(UnsafeMutableRawPointer(graph), n, val, d)
            } } }
        }
        return try body()
    }

    /// The rendered bytes in `format` (default: the graph's format), produced in memory by gvRenderData.
    public func renderData(format: String? = nil) throws -> [UInt8] {
        let f = try GraphvizFormats.validate(format ?? self.format)
        return try GV.locked {
            try layoutIfNeeded()
            return try withViewport(for: f) { try renderDataLaidOut(f) }
        }
    }

    /// gvRenderData of the laid-out graph (lock held).
    private func renderDataLaidOut(_ f: String) throws -> [UInt8] {
        var result: UnsafeMutablePointer<CChar>? = nil
        var length: UInt32 = 0
        let rc = withCStr(f) { gvRenderData(GV.context, graph, $0, &result, &length) }
        defer { if let result { gvFreeRenderData(result) } }
        guard rc == 0, let result else {
            let msg = GV.takeMessages()
            throw GraphvizError.renderFailed("format \(f): " + (msg.isEmpty ? "gvRenderData returned \(rc)" : msg))
        }
        return result.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
            Array(UnsafeBufferPointer(start: $0, count: Int(length)))
        }
    }

    /// Renders to `path` (gvRenderFilename) in `format`, default: the graph's format.
    public func render(to path: String, format: String? = nil) throws {
        let f = try GraphvizFormats.validate(format ?? self.format)
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            throw GraphvizError.io("cannot write \(path): directory \(dir) does not exist")
        }
        try GV.locked {
            try layoutIfNeeded()
            let rc = withViewport(for: f) {
                withCStr(f) { fc in withCStr(path) { p in gvRenderFilename(GV.context, graph, fc, p) } }
            }
            guard rc == 0 else {
                let msg = GV.takeMessages()
                throw GraphvizError.renderFailed("\(path) (\(f)): " + (msg.isEmpty ? "gvRenderFilename returned \(rc)" : msg))
            }
        }
        // gvRenderFilename reports an unwritable file through agerr but may still return 0.
        guard FileManager.default.fileExists(atPath: path) else {
            throw GraphvizError.io("cannot write \(path): " + GV.locked { GV.takeMessages() })
        }
    }

    /// The DOT text after layout (positions included), rendered in memory with the "dot" output format.
    public var dotSource: String {
        get throws { String(decoding: try renderData(format: "dot"), as: UTF8.self) }
    }

    /// The DOT text of the graph as built (no layout), written by agwrite into memory.
    public var source: String {
        GV.locked {
            var buf: UnsafeMutablePointer<CChar>? = nil
            var size = 0
            guard let f = open_memstream(&buf, &size) else { return "" }
            _ = agwrite(graph, UnsafeMutableRawPointer(f))
            fclose(f)
            defer { free(buf) }
            return buf.map { String(cString: $0) } ?? ""
        }
    }

    /// Writes `source` (the DOT text as built) to `path`.
    func writeSource(to path: String) throws {
        do { try source.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw GraphvizError.io("cannot write \(path): \(error.localizedDescription)")
        }
    }
}

/// Escapes text for a Graphviz (non-HTML) label: backslashes are doubled, newlines become "\n" (centred
/// line breaks), so user names cannot inject Graphviz escapes such as \N or \G.
func labelText(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
        switch c {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default: out.append(c)
        }
    }
    return out
}

/// Lines joined with Graphviz's centred line break.
func labelLines(_ lines: [String]) -> String { lines.map(labelText).joined(separator: "\\n") }
