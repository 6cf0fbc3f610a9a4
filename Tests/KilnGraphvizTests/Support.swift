import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Kiln
import Testing
@testable import KilnGraphviz

/// All viewer suites nest here and run one after another: the parametric test writes nnabla's global
/// parameter registry, which the viewer reads to recognise parameters, and the whole target takes ~1 s.
@Suite(.serialized) struct ViewerTests {}

/// The attribute list of node `id` in agwrite's DOT output ("\tid\t[a=b, ...];").
func attributes(of id: String, in source: String) -> String {
    guard let r = source.range(of: "\t\(id)\t[") else { return "" }
    let rest = source[r.upperBound...]
    guard let end = rest.range(of: "];") else { return "" }
    return String(rest[..<end.lowerBound]).replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\t", with: " ")
}

/// Small graphs and file checks shared by the viewer tests.
enum Fixture {
    /// conv -> relu -> maxpool -> (two branches: conv, relu) -> concatenate -> affine, with hand-made
    /// parameters (no global registry, so these tests can run in parallel with anything).
    static func residualLike() throws -> (output: Variable, functions: [String]) {
        let x = try Variable(shape: [2, 3, 8, 8], name: "image")
        let w1 = try Variable(shape: [4, 3, 3, 3], needGrad: true, name: "conv1/conv/W")
        let b1 = try Variable(shape: [4], needGrad: true, name: "conv1/conv/b")
        var h = try F.convolution(x, w1, b1, pad: [1, 1])
        h = try F.relu(h)
        h = try F.maxPooling(h, kernel: [2, 2])
        let w2 = try Variable(shape: [4, 4, 3, 3], needGrad: true, name: "conv2/conv/W")
        let branch = try F.relu(try F.convolution(h, w2, nil, pad: [1, 1]))
        let merged = try F.concatenate([h, branch], axis: 1)
        let wf = try Variable(shape: [8 * 4 * 4, 10], needGrad: true, name: "fc/affine/W")
        let bf = try Variable(shape: [10], needGrad: true, name: "fc/affine/b")
        let y = try F.affine(merged, wf, bf)
        return (y, ["Convolution", "ReLU", "MaxPooling", "Convolution", "ReLU", "Concatenate", "Affine"])
    }

    static func tempPath(_ name: String) -> String {
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("kiln-graphviz-tests-\(getpid())")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir as NSString).appendingPathComponent(name)
    }

    static func bytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

    static let pngMagic: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func isPNG(_ b: [UInt8]) -> Bool { b.count > 8 && Array(b.prefix(8)) == pngMagic }
    static func isPDF(_ b: [UInt8]) -> Bool { b.count > 5 && Array(b.prefix(5)) == Array("%PDF-".utf8) }

    /// Parses SVG with Foundation's XMLParser; returns the elements with their attributes (nil if it is not XML).
    static func svgElements(_ b: [UInt8]) -> [(name: String, attributes: [String: String], text: String)]? {
        final class Collector: NSObject, XMLParserDelegate {
            var elements: [(name: String, attributes: [String: String], text: String)] = []
            var stack: [Int] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
                        qualifiedName: String?, attributes: [String: String] = [:]) {
                elements.append((name, attributes, ""))
                stack.append(elements.count - 1)
            }
            func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
                _ = stack.popLast()
            }
            func parser(_ parser: XMLParser, foundCharacters string: String) {
                if let i = stack.last { elements[i].text += string }
            }
        }
        let parser = XMLParser(data: Data(b))
        let c = Collector()
        parser.delegate = c
        parser.shouldResolveExternalEntities = false
        guard parser.parse() else { return nil }
        return c.elements
    }

    /// The titles of the SVG's node groups (`<g class="node"><title>NAME</title>`): Graphviz node names.
    static func svgNodeTitles(_ b: [UInt8]) -> [String]? {
        guard let els = svgElements(b) else { return nil }
        var titles: [String] = []
        var inNode = false
        for e in els {
            if e.name == "g" { inNode = e.attributes["class"] == "node" }
            else if e.name == "title" && inNode { titles.append(e.text); inNode = false }
        }
        return titles
    }
}

/// A node of Graphviz's laid-out DOT output ("-Tdot"), in points.
struct LaidOutNode { var x: Double, y: Double, width: Double, height: Double }

extension Fixture {
    /// The attributes of a DOT attribute list ("a=b, c=\"d, e\"") as a dictionary, quotes removed.
    static func dotAttributes(_ list: Substring) -> [String: String] {
        var out: [String: String] = [:]
        let re = try! NSRegularExpression(pattern: #"(\w+)=("(?:[^"\\]|\\.)*"|[^,\s\]]+)"#)
        let s = String(list)
        for m in re.matches(in: s, range: NSRange(s.startIndex..., in: s)) {
            guard let k = Range(m.range(at: 1), in: s), let v = Range(m.range(at: 2), in: s) else { continue }
            var value = String(s[v])
            if value.hasPrefix("\"") { value = String(value.dropFirst().dropLast()) }
            out[String(s[k])] = value
        }
        return out
    }

    /// The statements of a DOT text written by Graphviz: (head, attribute list) where head is "node", "edge",
    /// "graph", a node name or "tail -> head".
    static func dotStatements(_ dot: String) -> [(head: String, attributes: [String: String])] {
        var out: [(String, [String: String])] = []
        var rest = Substring(dot)
        while let open = rest.range(of: "\t[") {
            let lineStart = rest[..<open.lowerBound].lastIndex(of: "\n").map { rest.index(after: $0) } ?? rest.startIndex
            let head = rest[lineStart..<open.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let close = rest[open.upperBound...].range(of: "];\n") ?? rest[open.upperBound...].range(of: "]\n") else { break }
            out.append((head, dotAttributes(rest[open.upperBound..<close.lowerBound])))
            rest = rest[close.upperBound...]
        }
        return out
    }

    /// Positions and sizes of the nodes in laid-out DOT text (node defaults filling in width and height).
    static func laidOutNodes(_ dot: String) -> [String: LaidOutNode] {
        var defaults: [String: String] = ["width": "0.75", "height": "0.5"]
        if let r = dot.range(of: "\tnode [") {
            let rest = dot[r.upperBound...]
            if let end = rest.range(of: "];") { defaults.merge(dotAttributes(rest[..<end.lowerBound])) { $1 } }
        }
        var nodes: [String: LaidOutNode] = [:]
        for (head, a) in dotStatements(dot) where !["node", "edge", "graph"].contains(head) && !head.contains("->") {
            let p = (a["pos"] ?? "").split(separator: ",").compactMap { Double($0.filter { $0 != "!" }) }
            guard p.count == 2, let w = Double(a["width"] ?? defaults["width"] ?? ""),
                  let h = Double(a["height"] ?? defaults["height"] ?? "") else { continue }
            nodes[head] = LaidOutNode(x: p[0], y: p[1], width: w * 72, height: h * 72)
        }
        return nodes
    }

    /// The edges of laid-out DOT text as (tail, head) names.
    static func laidOutEdges(_ dot: String) -> [(tail: String, head: String)] {
        dotStatements(dot).compactMap { s in
            let parts = s.head.components(separatedBy: " -> ")
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
    }

    /// A network like the viewer benchmark's generated graph (Benchmarks/viewer/generate_graph.py): blocks of
    /// Affine -> ReLU -> Concatenate(skip) -> Affine, `functions` functions in all.
    static func generatedNetwork(functions: Int) throws -> Variable {
        var h = try Variable(shape: [1, 8], name: "x")
        for i in 0..<(functions / 4) {
            let wa = try Variable(shape: [8, 8], needGrad: true, name: "b\(i)/a/W")
            let ba = try Variable(shape: [8], needGrad: true, name: "b\(i)/a/b")
            let wc = try Variable(shape: [16, 8], needGrad: true, name: "b\(i)/c/W")
            let bc = try Variable(shape: [8], needGrad: true, name: "b\(i)/c/b")
            let r = try F.relu(try F.affine(h, wa, ba))
            h = try F.affine(try F.concatenate([h, r], axis: 1), wc, bc)
        }
        return h
    }
}

extension Fixture {
    /// Width and height of a PNG, from its IHDR chunk.
    static func pngSize(_ b: [UInt8]) -> (width: Int, height: Int)? {
        guard isPNG(b), b.count >= 24 else { return nil }
        func be(_ i: Int) -> Int { b[i..<i + 4].reduce(0) { $0 << 8 | Int($1) } }
        return (be(16), be(20))
    }
}
