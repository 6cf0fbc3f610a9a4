// `import Kiln` gives the whole API, as it did when Kiln was one target: every layer is re-exported here.
// The layers, lowest first (each depends only on those before it; see Package.swift):
// KilnCore < KilnKernels < KilnGraph < KilnCompiler < KilnRuntime < {KilnTraining, KilnConverters, KilnInterop} < Kiln.
@_exported import KilnCore
@_exported import KilnKernels
@_exported import KilnGraph
@_exported import KilnCompiler
@_exported import KilnRuntime
@_exported import KilnTraining
@_exported import KilnConverters
@_exported import KilnInterop
