import Foundation
import Testing
@testable import Kiln

/// The DocC article `GettingStarted.md` runs as written: `articleRuns` is its code, and
/// `articleCodeIsThisCode` checks that every line of every Swift block in the article appears, in order,
/// in this file, so the article cannot drift from code that compiles and runs.
@Suite struct GettingStartedArticleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    @Test func articleRuns() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [32, 1, 28, 28])              // images
            let t = try Variable(shape: [32, 1], dtype: .int32)       // labels, nnabla's (N, 1) layout

            func lenet(_ x: Variable, test: Bool) throws -> Variable {
                var h = try PF.convolution(x, outMaps: 8, kernel: [5, 5], name: "conv1")
                h = try PF.batchNormalization(h, batchStat: !test, name: "bn1")
                h = try F.maxPooling(try F.relu(h), kernel: [2, 2])
                return try PF.affine(h, outMaps: 10, name: "fc")
            }
            let y = try lenet(x, test: false)
            let loss = try F.mean(try F.softmaxCrossEntropy(y, t))

            let plan = try Compiler.plan([loss], .training)
            print(plan.summary())      // arena_bytes, lower_bound_bytes, naive_bytes, persistent_bytes
            print(plan.dump())         // every step, the buffers it reads and writes, and a memory map
            #expect(plan.summary().contains("arena_bytes"))

            let solver = Adam(alpha: 1e-3)
            solver.setParameters(Parameters.current())     // conv1/conv/W, conv1/conv/b, bn1/bn/beta, ...
            let updater = Updater(solver: solver, loss: loss, dataFeeder: {
                x.d = (0..<x.size).map { _ in Float.random(in: 0..<1) }
                t.d = (0..<32).map { _ in Float(Int.random(in: 0..<10)) }
            })
            let before = try #require(Parameters.get("fc/affine/W")).d
            for i in 0..<20 { try updater.update(i) }
            #expect(try #require(Parameters.get("fc/affine/W")).d != before, "training changed the weights")

            let xTest = try Variable(shape: [32, 1, 28, 28])
            let yTest = try lenet(xTest, test: true)
            let folded = try BatchNormalizationFoldedConverter().convert(yTest, entryVariables: [xTest])
            let run = try Compiler.compile(folded, .inference)
            xTest.d = (0..<xTest.size).map { _ in Float.random(in: 0..<1) }
            try run.run()
            print(folded.d.prefix(10))                     // the first image's class scores
            #expect(Parameters.get("bn-folded/conv1/conv/W") != nil)
            try yTest.forward()
            #expect(mismatch(folded.d, yTest.d, rtol: 1e-4, atol: 1e-4) == nil, "folding keeps the test-mode outputs")

            let path = FileManager.default.temporaryDirectory.appendingPathComponent("lenet.safetensors").path
            try Parameters.save(path: path)
            try Parameters.load(path: path)
            #expect(FileManager.default.fileExists(atPath: path))
            try? FileManager.default.removeItem(atPath: path)

            let onnxPath = FileManager.default.temporaryDirectory.appendingPathComponent("lenet.onnx").path
            try ONNXExporter.export([yTest]).save(path: onnxPath)
            let model = try ONNXModel.load(path: onnxPath)
            let imported = try ONNXImporter.importGraph(model)
            let scores = imported.graph.outputs[0]
            let images = imported.graph.inputsWithoutData.compactMap { imported.graph.variables[$0] }
            try images[0].setData(xTest.d)
            try Compiler.compile(scores, .inference).run()
            print(scores.d.prefix(10))                     // the same class scores as yTest
            #expect(mismatch(scores.d, yTest.d, rtol: 1e-5, atol: 1e-5) == nil, "the ONNX round trip keeps the outputs")
            try? FileManager.default.removeItem(atPath: onnxPath)
        }
    }

    @Test func articleCodeIsThisCode() throws {
        let article = try String(contentsOf: Self.root.appendingPathComponent("Sources/Kiln/Kiln.docc/GettingStarted.md"), encoding: .utf8)
        let here = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let code = here.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var blocks: [[String]] = [], current: [String]? = nil
        for line in article.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```swift") { current = [] } else if line.hasPrefix("```"), let c = current {
                blocks.append(c)
                current = nil
            } else if current != nil {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if !trimmed.isEmpty && trimmed != "import Kiln" { current?.append(trimmed) }
            }
        }
        #expect(blocks.count >= 5, "the article's five steps")
        var from = 0
        for line in blocks.joined() {
            guard let i = code[from...].firstIndex(of: line) else {
                Issue.record("the article's line \"\(line)\" is not in GettingStartedArticleTests (in order)")
                return
            }
            from = i + 1
        }
    }

    /// The README shows the article's ONNX step: its lines too are this file's code, in order.
    @Test func readmeInteropExampleIsThisCode() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let here = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let code = here.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        var blocks: [[String]] = [], current: [String]? = nil
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```swift") { current = [] } else if line.hasPrefix("```"), let c = current {
                blocks.append(c)
                current = nil
            } else if current != nil {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if !trimmed.isEmpty { current?.append(trimmed) }
            }
        }
        let example = try #require(blocks.first { $0.contains { $0.contains("ONNXImporter.importGraph") } }, "the README's ONNX example")
        var from = 0
        for line in example {
            guard let i = code[from...].firstIndex(of: line) else {
                Issue.record("the README's line \"\(line)\" is not in GettingStartedArticleTests (in order)")
                return
            }
            from = i + 1
        }
    }
}
