import Foundation
import Testing
@testable import KilnGraphviz

/// The picture of Kiln's data path in docs/ARCHITECTURE.md, drawn by Kiln's own Graphviz binding. The DOT
/// source is compared with the committed docs/images/architecture.dot, so the picture cannot drift from
/// this description; `KILN_UPDATE_SNAPSHOTS=1` rewrites both the DOT file and the SVG picture.
struct ArchitecturePictureTests {
    /// A target, what it holds, and the targets it builds on (its layer rule: nothing above it).
    struct Layer {
        let name: String
        let holds: [String]
        let dependsOn: [String]
    }

    static let layers: [Layer] = [
        Layer(name: "KilnCore", holds: ["KilnError, DType, TensorType, Shapes"], dependsOn: []),
        Layer(name: "KilnKernels", holds: ["element-wise, GEMM, im2col, convolution engine,",
                                           "pooling, BN, losses, Threads, WorkerPool"], dependsOn: ["KilnCore"]),
        Layer(name: "KilnGraph", holds: ["Variable, FunctionNode, Function + registry, F,",
                                         "PF, Module, Parameters, Context, graph files"],
              dependsOn: ["KilnKernels"]),
        Layer(name: "KilnCompiler", holds: ["Pipeline: Schedule, Fusion, Lowering, Autodiff,",
                                            "Rematerialization, Liveness, InPlace, HalfStorage,",
                                            "Placement -> Plan (dump, json, verify)"],
              dependsOn: ["KilnGraph"]),
        Layer(name: "KilnRuntime", holds: ["Executable (one arena, kernels bound once),",
                                           "Variable.forward/backward, plan cache"], dependsOn: ["KilnCompiler"]),
        Layer(name: "KilnTraining", holds: ["Solvers, Updater, DynamicLossScalingUpdater,",
                                            "Evaluator, Trainer, monitors, data iterators"],
              dependsOn: ["KilnRuntime"]),
        Layer(name: "KilnConverters", holds: ["GraphRewrite, BN folding / linear,", "fixed-point converters"],
              dependsOn: ["KilnGraph"]),
        Layer(name: "KilnInterop", holds: ["ONNX, nnabla .nnp / .h5:", "importers and exporters"],
              dependsOn: ["KilnGraph"]),
        Layer(name: "Kiln", holds: ["re-exports every layer; zoo models,", "ModelFile, kiln run / convert runners"],
              dependsOn: ["KilnTraining", "KilnConverters", "KilnInterop"]),
        Layer(name: "KilnMPI", holds: ["MPICommunicator on Open MPI", "(the MPI trait)"], dependsOn: ["KilnTraining"]),
        Layer(name: "KilnGraphviz", holds: ["SimpleGraph, PlanPicture on libgvc"], dependsOn: ["Kiln"]),
        Layer(name: "KilnPlot", holds: ["training curves on cairo"], dependsOn: ["Kiln"]),
        Layer(name: "KilnCLI", holds: ["the kiln command"], dependsOn: ["Kiln", "KilnGraphviz", "KilnMPI", "KilnPlot"]),
    ]

    static var imagesDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/images")
    }

    static func picture() throws -> Digraph {
        let g = try Digraph(name: "kiln", format: "svg")
        g.setGraphAttribute("rankdir", "TB")                 // upper layers on top, KilnCore at the bottom
        g.setGraphAttribute("nodesep", "0.3")
        g.setGraphAttribute("ranksep", "0.35")
        g.setNodeDefault("shape", "box")
        g.setNodeDefault("style", "rounded,filled")
        g.setNodeDefault("fillcolor", "#eef3fb")
        g.setNodeDefault("color", "#3b5b92")
        g.setNodeDefault("fontname", "DejaVu Sans")
        g.setNodeDefault("fontsize", "11")
        g.setEdgeDefault("color", "#3b5b92")
        for layer in layers {
            let label = ([layer.name] + layer.holds).joined(separator: "\\n")
            _ = g.node(layer.name, [("label", label)])
        }
        for layer in layers { for d in layer.dependsOn { g.edge(layer.name, d) } }
        return g
    }

    @Test func thePictureInTheDocsIsTheOneDrawnHere() throws {
        let g = try Self.picture()
        let source = g.source                                // as built, before layout adds positions
        let dot = Self.imagesDirectory.appendingPathComponent("architecture.dot")
        if ProcessInfo.processInfo.environment["KILN_UPDATE_SNAPSHOTS"] == "1" {
            try source.write(to: dot, atomically: true, encoding: .utf8)
            try g.render(to: Self.imagesDirectory.appendingPathComponent("architecture.svg").path)
        }
        let committed = try String(contentsOf: dot, encoding: .utf8)
        #expect(committed == source, "regenerate with KILN_UPDATE_SNAPSHOTS=1 swift test --filter ArchitecturePicture")
        let svg = try String(contentsOf: Self.imagesDirectory.appendingPathComponent("architecture.svg"), encoding: .utf8)
        for layer in Self.layers { #expect(svg.contains(">\(layer.name)</text>"), "\(layer.name)") }
    }

    /// The picture's layers are the package's: every target folder under Sources/ that is not a system
    /// library appears, and each layer builds only on layers drawn below it.
    @Test func thePictureNamesEveryTargetInLayerOrder() throws {
        let sources = Self.imagesDirectory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources")
        let folders = try FileManager.default.contentsOfDirectory(atPath: sources.path)
            .filter { !$0.hasPrefix("C") && !$0.hasPrefix(".") }
        #expect(Set(folders) == Set(Self.layers.map(\.name)))
        var seen = Set<String>()
        for layer in Self.layers {
            #expect(layer.dependsOn.allSatisfy(seen.contains), "\(layer.name) depends on a layer drawn above it")
            seen.insert(layer.name)
        }
    }
}
