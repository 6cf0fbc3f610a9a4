@preconcurrency import Glibc
import ArgumentParser
import Foundation
import Kiln

struct KilnCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Define-then-run neural networks compiled ahead of time into memory-planned CPU plans.",
        version: KilnVersion.description,
        subcommands: [TrainCommand.self, PlanCommand.self, RunCommand.self, ConvertCommand.self, DemoCommand.self, ViewCommand.self, BenchCommand.self, ProfileCommand.self, PlotCommand.self, ImportCommand.self, ExportCommand.self, QuantizeCommand.self, EvaluateCommand.self])

    /// `kiln` alone is a usage error, as for other tools with subcommands: the help goes to standard error and
    /// the status is 64 (`kiln --help` prints it to standard output with status 0).
    func run() throws {
        FileHandle.standardError.write(Data((Self.helpMessage() + "\nError: missing subcommand\n").utf8))
        throw ExitCode(64)
    }
}

/// Turns Kiln errors into one clear line and exit code 1 instead of a stack trace.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as KilnError {
        FileHandle.standardError.write(Data("kiln: error: \(e)\n".utf8))
        throw ExitCode(1)
    }
}

// Progress lines reach a file or pipe as they are printed (a long training run written to a log would
// otherwise show nothing until a 4 KiB buffer fills).
setvbuf(stdout, nil, _IOLBF, 0)
KilnCommand.main()
