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
