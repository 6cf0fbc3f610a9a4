import Foundation
import Testing
@testable import Kiln

/// Geometry arguments from a stranger's graph file: overflowing arithmetic is a thrown error naming the
/// function and the expression, never a trap; a plan too large for the memory budget is refused before
/// anything is allocated.
struct HostileGeometryTests {
    static func graph(_ function: String, _ args: String, x: [Int] = [1, 1, 4, 4], w: [Int]? = [1, 1, 3, 3],
                      y: [Int] = [1, 1, 4, 4]) -> String {
        let wVar = w.map { #", {"name": "w", "shape": \#($0), "kind": "parameter"}"# } ?? ""
        let inputs = w == nil ? #"["x"]"# : #"["x", "w"]"#
        return #"""
        {"format": "kiln-graph/1",
         "variables": [{"name": "x", "shape": \#(x), "kind": "input"}\#(wVar),
                       {"name": "y", "shape": \#(y), "kind": "buffer"}],
         "functions": [{"name": "f", "type": "\#(function)", "inputs": \#(inputs), "outputs": ["y"], "args": {\#(args)}}],
         "outputs": ["y"]}
        """#
    }

    static func loadError(_ text: String) -> String? {
        do {
            _ = try Parameters.isolated { try GraphFile.load(bytes: Array(text.utf8)) }
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test(arguments: [
        ("Convolution", #""pad": [4611686018427387904, 0]"#, "padded input"),
        ("Convolution", #""pad": [9223372036854775807, 0]"#, "padded input"),
        ("Convolution", #""dilation": [4611686018427387904, 1]"#, "kernel span"),
        ("Deconvolution", #""stride": [4611686018427387904, 1]"#, "output size"),
        ("Deconvolution", #""dilation": [4611686018427387904, 1]"#, "output size"),
    ])
    func convolutionGeometryOverflowIsAnError(function: String, args: String, expression: String) throws {
        let message = try #require(Self.loadError(Self.graph(function, args)), "\(function) \(args) loaded")
        #expect(message.contains(function) && message.contains(expression) && message.contains("overflows"), "\(message)")
    }

    @Test func poolingPadOverflowIsAnError() throws {
        let k = 4611686018427387905, p = 4611686018427387904        // 2^62 + 1 and 2^62: pad < kernel
        let text = Self.graph("MaxPooling", #""kernel": [\#(k), 1], "pad": [\#(p), 0]"#, w: nil)
        let message = try #require(Self.loadError(text))
        #expect(message.contains("MaxPooling") && message.contains("padded input") && message.contains("overflows"), "\(message)")
    }

    /// A convolution padded by 20,000 has a 40,002 x 40,002 output (6.4 GB) and im2col columns nine times
    /// that: the plan is refused by the budget, naming it, before any memory is taken.
    @Test func aPlanAboveTheBudgetIsRefused() throws {
        let text = Self.graph("Convolution", #""pad": [20000, 20000]"#, y: [1, 1, 40002, 40002])
        try Parameters.isolated {
            let g = try GraphFile.load(bytes: Array(text.utf8))
            let budget = 1 << 30
            #expect(throws: KilnError.self) {
                _ = try Compiler.plan(g.outputs, .inference, context: Context(memoryBudget: budget))
            }
            do {
                _ = try Compiler.plan(g.outputs, .inference, context: Context(memoryBudget: budget))
            } catch {
                #expect("\(error)".contains("above the memory budget of \(budget) bytes"), "\(error)")
            }
        }
        #expect(Context().memoryBudget == Context.physicalMemoryBudget)
        #expect(Context.physicalMemoryBudget >= 1 << 30)
    }

    @Test func checkedArithmeticReportsOverflowAndKeepsExactValues() throws {
        let product: CheckedInt = CheckedInt(3) * 4
        let quotient: CheckedInt = 10 / CheckedInt(5)
        let sum: CheckedInt = product - 2 + quotient
        #expect(try sum.get("x") == 12)                     // 3 x 4 - 2 + 10 / 5
        #expect((CheckedInt(Int.max) + 1).value == nil)
        #expect((CheckedInt(Int.min) - 1).value == nil)
        #expect((CheckedInt(Int.max / 2 + 1) * 2).value == nil)
        #expect((CheckedInt(1) / 0).value == nil)
        #expect((CheckedInt(Int.min) / -1).value == nil)
        #expect(throws: KilnError.self) { try (CheckedInt(Int.max) + 1).get("a sum") }
    }
}
