import ArgumentParser
import Kiln

/// `--params`, on every command that takes a graph: trained weights (safetensors, names as the graph's
/// parameters) loaded over the graph's own.
struct ParametersOption: ParsableArguments {
    @Option(name: .customLong("params"), help: ArgumentHelp("Trained weights to load into the graph's parameters (.safetensors, names as the graph's).",
                                                             valueName: "file"))
    var path: String?

    func validate() throws {
        if let path, !path.lowercased().hasSuffix(".safetensors") {
            throw ValidationError("--params takes a .safetensors file, got '\(path)'")
        }
    }
}
