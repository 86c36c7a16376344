# outpost-devkafka: IN-MEMORY DEVELOPMENT Kafka broker (librdkafka mock cluster behind a fixed
# bootstrap address). Included from aggregator/CMakeLists.txt. Not for production.

add_library(outpost_devkafka_lib STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/devkafka/dev_kafka_broker.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/devkafka/fault_control.cc
)
target_include_directories(outpost_devkafka_lib PUBLIC ${CMAKE_CURRENT_LIST_DIR}/src/devkafka)
target_link_libraries(outpost_devkafka_lib
  PUBLIC outpost_common
  PRIVATE PkgConfig::RDKAFKA spdlog::spdlog Threads::Threads)

add_executable(outpost-devkafka ${CMAKE_CURRENT_LIST_DIR}/src/devkafka/main.cc)
target_link_libraries(outpost-devkafka PRIVATE outpost_devkafka_lib outpost_common CLI11::CLI11)
