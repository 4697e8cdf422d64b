// Pure-Kotlin pre/post-processing core: no Android dependency, no external libraries.
// Its tests are a plain `main` runner over the vectors written by `salsdk export android`:
//   ./gradlew :core:vectorTest      (or, without Gradle, tests/test_android_core.py compiles it with kotlinc)
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

val vectorTest by tasks.registering(JavaExec::class) {
    description = "Reproduce the Python SDK's pre/post-processing test vectors with the Kotlin core."
    group = "verification"
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("org.salsdk.core.CoreTestsKt")
    args(layout.projectDirectory.dir("src/test/resources/vectors").asFile.absolutePath)
}

tasks.named("check") { dependsOn(vectorTest) }
